#!/bin/sh
# Replay the fuzz corpora through the targets built with replay.c.
# make check runs this from the build directory; TOP_SRCDIR is the source.
set -e
top=${TOP_SRCDIR:-.}
./tests/fuzz/replay_smtp "$top/tests/fuzz/corpus/smtp"
./tests/fuzz/replay_sasl "$top/tests/fuzz/corpus/sasl"
