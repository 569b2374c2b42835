#!/bin/sh
# make check runs every test through this (LOG_COMPILER, and SH_LOG_COMPILER
# before the shell): the test file is the last argument, the command is all
# of them. Tests that read Fashion-MNIST from Debian's dataset-fashion-mnist
# package (the data clipkd trains and evaluates on by default) skip — exit
# 77, shown as SKIP with the reason — when it is not installed, instead of
# failing.
for test; do :; done
case "$(basename "$test")" in
test-data | test-train | test-train-cache | test-train-resume | test-train-image | test-rdm-run | test-cli.sh | \
    test-table-cli.sh | test-models-cli.sh | test-dist.sh)
    dir=/usr/share/datasets/fashion-mnist
    if [ ! -r "$dir/t10k-images-idx3-ubyte.gz" ]; then
        echo "SKIP: $(basename "$test") reads Fashion-MNIST from $dir, which is not installed" \
            "(Debian package dataset-fashion-mnist)"
        exit 77
    fi
    ;;
esac
exec "$@"
