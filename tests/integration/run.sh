#!/bin/sh
# smtptap integration tests, run by "make check" (automake TESTS).
# Environment (set by Makefile.am): SMTPTAP, TEST_PYTHON, TOP_SRCDIR.
# Writes nothing in the source tree: pytest's cache is off and every temporary
# file lives under pytest's tmp_path (in $TMPDIR).
set -u

: "${TEST_PYTHON:=/usr/bin/python3}"
if [ -z "${TOP_SRCDIR:-}" ]; then
	TOP_SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
fi
if [ -z "${SMTPTAP:-}" ]; then
	echo "run.sh: SMTPTAP is not set (path of the smtptap binary)" >&2
	exit 99
fi
if [ ! -x "$SMTPTAP" ]; then
	echo "run.sh: $SMTPTAP is not an executable" >&2
	exit 99
fi
export SMTPTAP
if ! "$TEST_PYTHON" -c 'import pytest, aiosmtpd' 2>/dev/null; then
	echo "run.sh: $TEST_PYTHON lacks pytest or aiosmtpd (apt-get install python3-pytest python3-aiosmtpd)" >&2
	exit 99
fi

# pytest writes no bytecode into the (possibly read-only) source tree either.
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE

"$TEST_PYTHON" -m pytest -p no:cacheprovider -q -rfE "$TOP_SRCDIR/tests/integration"
status=$?
# 5 = no tests were collected: that is a failure, not a pass.
if [ "$status" -eq 5 ]; then
	echo "run.sh: pytest collected no tests" >&2
	exit 1
fi
exit "$status"
