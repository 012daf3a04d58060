#!/bin/sh
# smtptap quick start for a fresh Debian 12 machine.
#
#   ./quickstart.sh [HOST[:PORT]]   install, build, and run smtptap against HOST,
#                                   or against a local demo upstream without HOST
#   ./quickstart.sh --test          install, build, and run the whole test suite
#
# Run as root, or as a user who may use sudo. SMTPTAP_LISTEN overrides the
# local address ([ADDR:]PORT, default 127.0.0.1:2525).
set -eu
cd "$(dirname "$0")"

BUILD_DEPS="build-essential autoconf automake pkg-config libevent-dev libssl-dev libcmocka-dev libinih-dev libjansson-dev libsystemd-dev"
RUN_DEPS="ca-certificates openssl"
TEST_DEPS="python3 python3-pytest python3-aiosmtpd swaks libdigest-hmac-perl curl msmtp"

sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo

install_deps() {
	$sudo apt-get update
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	    $BUILD_DEPS $RUN_DEPS $TEST_DEPS
}

build() {
	[ -x configure ] || autoreconf -fi
	[ -f Makefile ] || ./configure
	make -j"$(nproc)"
}

demo() {
	dir=$(mktemp -d)
	trap 'kill $upstream_pid 2>/dev/null; rm -rf "$dir"' EXIT INT TERM
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
	    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
	    -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
	/usr/bin/python3 contrib/demo-upstream.py "$dir/cert.pem" "$dir/key.pem" \
	    >"$dir/upstream.out" &
	upstream_pid=$!
	i=0
	until grep -q READY "$dir/upstream.out" 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 100 ] || { echo "demo upstream did not start" >&2; exit 1; }
		sleep 0.1
	done
	port=$(sed -n 's/^READY //p' "$dir/upstream.out")
	listen=${SMTPTAP_LISTEN:-127.0.0.1:2525}
	lport=${listen##*:}
	echo "Demo: smtptap on $listen relays to a local demo server on port $port."
	echo "A test message follows; point your own mail client at localhost:$lport"
	echo "(no encryption, user demo@example.org, password demo-password). Ctrl-C stops."
	echo
	(
		# Send once smtptap accepts connections.
		i=0
		until swaks --server "127.0.0.1:$lport" --quit-after CONNECT >/dev/null 2>&1; do
			i=$((i + 1)); [ $i -lt 100 ] || exit 0; sleep 0.1
		done
		swaks --server "127.0.0.1:$lport" --from demo@example.org \
		    --to someone@example.org --auth PLAIN --auth-user demo@example.org \
		    --auth-password demo-password >/dev/null 2>&1
	) &
	./src/smtptap -l "$listen" --ca-file "$dir/cert.pem" "localhost:$port"
}

case "${1:-}" in
--test)
	install_deps
	build
	status=0
	make check VERBOSE=1 || status=$?
	# The per-program results, then one total line.
	grep -h -E '^\[  (PASSED|FAILED)  \]|^[0-9]+ (passed|failed)|^=+ .*(passed|failed)' \
	    tests/unit/*.log tests/integration/*.log 2>/dev/null || true
	passed=$(cat tests/unit/*.log tests/integration/*.log 2>/dev/null | sed -n \
	    -e 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' \
	    -e 's/^=* *\([0-9]*\) passed.*/\1/p' -e 's/^=* *[0-9]* failed, \([0-9]*\) passed.*/\1/p' |
	    awk '{n += $1} END {print n + 0}')
	failed=$(cat tests/unit/*.log tests/integration/*.log 2>/dev/null | sed -n \
	    -e 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' \
	    -e 's/^=* *\([0-9]*\) failed.*/\1/p' |
	    awk '{n += $1} END {print n + 0}')
	echo "tests: $passed passed, $failed failed"
	exit $status
	;;
-h|--help)
	sed -n '2,10s/^# \{0,1\}//p' "$0"
	;;
"")
	install_deps
	build
	demo
	;;
*)
	install_deps
	build
	exec ./src/smtptap "$@"
	;;
esac
