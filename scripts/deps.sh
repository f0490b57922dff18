#!/bin/sh
# Installs the Debian packages embd needs, only when they are missing.
#
#   scripts/deps.sh build   libraries for building embd (found with pkg-config)
#   scripts/deps.sh test    the above, plus what the tests use
#   scripts/deps.sh bench   the above, plus what the benchmark uses
#
# It runs `apt-get update` and `apt-get install -y` once, for everything that
# is missing, and says which Debian package provides what.
set -eu
what=${1:-build}
missing=""

need_pkgconfig() { # module debian-package
	if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists "$1"; then
		missing="$missing $2"
	fi
}
need_cmd() { # command debian-package
	command -v "$1" >/dev/null 2>&1 || missing="$missing $2"
}
need_py() { # module debian-package; Debian's python3, which apt's modules serve
	if [ ! -x /usr/bin/python3 ] || ! /usr/bin/python3 -c "import $1" >/dev/null 2>&1; then
		missing="$missing $2"
	fi
}

need_cmd pkg-config pkg-config
need_pkgconfig libmicrohttpd libmicrohttpd-dev
need_pkgconfig jansson libjansson-dev
need_pkgconfig openblas libopenblas-dev
need_pkgconfig cmocka libcmocka-dev
case "$what" in
test | bench)
	need_py numpy python3-numpy
	need_py pytest python3-pytest
	need_py gensim python3-gensim
	need_py torch python3-torch
	need_py ensurepip python3-venv # python3 -m venv needs ensurepip
	need_py setuptools python3-setuptools
	need_py pip python3-pip
	need_cmd curl curl
	need_cmd clang clang
	;;
esac
case "$what" in
bench)
	need_cmd wrk wrk
	need_cmd nginx nginx
	need_py flask python3-flask
	need_cmd gunicorn gunicorn
	need_cmd gnuplot gnuplot-nox
	;;
esac

# libFuzzer's runtime is only a Recommends of Debian's clang: check that a fuzz target links.
fuzzer_links() {
	printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' |
		clang -fsanitize=fuzzer -x c - -o /dev/null >/dev/null 2>&1
}

updated=""
install() { # debian-package...
	echo "deps: installing missing Debian packages: $*" >&2
	sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		if command -v sudo >/dev/null 2>&1; then
			sudo=sudo
		else
			echo "deps: need root to install: $* (run: apt-get install -y $*)" >&2
			exit 1
		fi
	fi
	export DEBIAN_FRONTEND=noninteractive
	if [ -z "$updated" ]; then
		$sudo apt-get update -qq
		updated=1
	fi
	# shellcheck disable=SC2086 # the list is meant to split into words
	$sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
	echo "deps: installed: $*" >&2
}

# shellcheck disable=SC2086 # the list is meant to split into words
[ -z "$missing" ] || install $missing
case "$what" in
test | bench)
	fuzzer_links || install "libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev"
	;;
esac
