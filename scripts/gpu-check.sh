#!/usr/bin/env bash
# The device check of dprox-compute's CUDA backend: on a machine with an NVIDIA GPU and driver,
# find the CUDA libraries, run the compute tests with CUDA required (GPU loss and gradient against
# the CPU within 1e-4, for every model), and time the gradients CPU vs GPU on MNIST-shaped data.
#
#   scripts/gpu-check.sh --prepare   on a developer machine (no GPU needed): build the release test
#                                    and example binaries with --features cuda into
#                                    target/gpu-check/ (for a GPU machine without a Rust toolchain)
#   scripts/gpu-check.sh [--build]   on the GPU machine, from anywhere in the repository: runs the
#                                    binaries in target/gpu-check/ when they are there, else (or
#                                    with --build) builds them with cargo
#
# With OUT set, the timing table goes to $OUT/gpu-table.md and the whole log to $OUT/gpu-check.log.
# Extra library folders can be given in CUDA_LIB_DIRS (colon-separated).
# Exit status: 0 when every test passed on the GPU; non-zero, with the reason, otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
prebuilt="$root/target/gpu-check"
export CARGO_TERM_COLOR=never

cargo_test_bins() {
    # The release test executables of dprox-compute with --features cuda, one path a line.
    cargo test --release -p dprox-compute --features cuda --no-run --message-format=json 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"].get("test"):
        print(m["executable"])'
}

if [ "${1:-}" = "--prepare" ]; then
    echo "== building release test and example binaries with --features cuda"
    cargo build --release -p dprox-compute --features cuda --example gpu_timing
    cargo test --release -p dprox-compute --features cuda --no-run
    rm -rf "$prebuilt" && mkdir -p "$prebuilt"
    cargo_test_bins | while read -r bin; do
        # agreement-<hash> -> agreement: the check runs each by its stem.
        name=$(basename "$bin" | sed 's/-[0-9a-f]\{16\}$//')
        cp "$bin" "$prebuilt/test-$name"
    done
    cp target/release/examples/gpu_timing "$prebuilt/gpu_timing"
    strip "$prebuilt"/* 2>/dev/null || true
    ls -la "$prebuilt"
    du -sh "$prebuilt"
    echo "prepared: run scripts/gpu-check.sh on the GPU machine with target/gpu-check carried along"
    exit 0
fi

if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    exec > >(tee "$OUT/gpu-check.log") 2>&1
fi

echo "== machine"
uname -m
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader
else
    echo "nvidia-smi: not found"
fi

echo "== CUDA libraries (loaded at run time by cudarc: libcuda, libnvrtc, libcublas)"
# Folders to search, most specific first; ldconfig's cache is asked separately.
search_dirs=()
IFS=: read -r -a extra <<<"${CUDA_LIB_DIRS:-}"
search_dirs+=("${extra[@]}")
for d in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda /usr/local/cuda-*; do
    [ -n "$d" ] && search_dirs+=("$d/lib64" "$d/lib" "$d/targets/x86_64-linux/lib")
done
search_dirs+=(/usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib/wsl/lib)
# pip wheels (nvidia-cublas, nvidia-cuda-nvrtc, their -cu12 forms) under each python's site-packages.
for py in python3 /opt/torch/.venv/bin/python3; do
    if command -v "$py" >/dev/null 2>&1; then
        while read -r sp; do
            [ -d "$sp/nvidia" ] && while read -r lib; do search_dirs+=("$lib"); done \
                < <(find "$sp/nvidia" -maxdepth 3 -type d -name lib 2>/dev/null)
        done < <("$py" -c 'import site, sys; print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null)
    fi
done

# find_lib STEM: the first loadable-looking file libSTEM.so[.N...] (not the .alt or -builtins ones).
find_lib() {
    local stem=$1 hit
    hit=$(ldconfig -p 2>/dev/null | awk -v s="lib$stem.so" '$1 ~ "^"s"(\\.[0-9]+)*$" {print $NF; exit}')
    if [ -n "$hit" ] && [ -e "$hit" ]; then echo "$hit"; return; fi
    for d in "${search_dirs[@]}"; do
        [ -d "$d" ] || continue
        hit=$(find "$d" -maxdepth 1 \( -type f -o -type l \) -regex ".*/lib$stem\.so\(\.[0-9]+\)*" 2>/dev/null | sort | head -n1)
        if [ -n "$hit" ]; then echo "$hit"; return; fi
    done
}

missing=0
libdir=$(mktemp -d)
ld_dirs=()
for stem in cuda nvrtc cublas; do
    path=$(find_lib "$stem")
    if [ -z "$path" ]; then
        echo "lib$stem: NOT FOUND"
        missing=1
        continue
    fi
    echo "lib$stem: $path -> $(readlink -f "$path")"
    # cudarc asks for libNAME.so, .so.12, .so.11 ...; a CUDA 13 wheel ships only .so.13, so link the
    # plain name to what was found, and put the library's own folder on the path for its
    # dependencies (libcublasLt, libnvrtc-builtins).
    ln -sf "$(readlink -f "$path")" "$libdir/lib$stem.so"
    ld_dirs+=("$(dirname "$(readlink -f "$path")")")
done
if [ "$missing" = 1 ]; then
    echo "error: a CUDA library is missing. The GPU objectives need the driver (libcuda) and, from the"
    echo "       CUDA toolkit or the nvidia-cublas / nvidia-cuda-nvrtc pip packages, libnvrtc and"
    echo "       libcublas. Install them or name their folders in CUDA_LIB_DIRS."
    exit 2
fi
LD_LIBRARY_PATH="$libdir:$(IFS=:; echo "${ld_dirs[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

# From here on a test that cannot open cuda:0 fails instead of skipping.
export DPROX_REQUIRE_CUDA=1
export RUST_BACKTRACE=1

# Prepared binaries first: a GPU machine may have cargo but no registry access to build with.
if [ -d "$prebuilt" ] && [ "${1:-}" != "--build" ]; then
    echo "== using the binaries prepared in $prebuilt (pass --build to build with cargo instead)"
    mapfile -t tests < <(ls "$prebuilt"/test-* 2>/dev/null)
    timing=$prebuilt/gpu_timing
elif command -v cargo >/dev/null; then
    echo "== cargo: $(cargo --version); building release with --features cuda"
    cargo build --release -p dprox-compute --features cuda --example gpu_timing
    mapfile -t tests < <(cargo_test_bins)
    timing=target/release/examples/gpu_timing
else
    echo "error: no binaries in $prebuilt and no cargo on this machine: run"
    echo "       scripts/gpu-check.sh --prepare on a developer machine and bring target/gpu-check along"
    exit 2
fi
[ "${#tests[@]}" -gt 0 ] || { echo "error: no test binaries found"; exit 2; }

echo "== compute tests on the GPU (CUDA required)"
status=0
for t in "${tests[@]}"; do
    echo "-- $(basename "$t")"
    if ! "$t" --test-threads=1; then
        status=1
    fi
done

echo "== gradient timing, CPU vs GPU"
if ! "$timing" "$root/data/mnist_5k.csv.gz"; then
    status=1
fi

if [ "$status" = 0 ]; then
    echo "== gpu-check ok"
else
    echo "== gpu-check FAILED (see above)"
fi
exit $status
