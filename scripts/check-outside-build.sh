#!/usr/bin/env bash
# Builds examples/custom-objective as a crate OUTSIDE this repository would: a copy in a temporary
# folder, depending on dprox through git (this clone's committed HEAD, by a file:// URL) instead of
# workspace paths, as docs/objectives.md tells users to. It then runs the copy's `sim` on its
# config. Dependency versions are pinned by this repository's Cargo.lock; the build shares this
# repository's target folder, so only the dprox crates are compiled again.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
crate="$work/custom-objective"
cp -r "$repo/examples/custom-objective" "$crate"
rev=$(git -C "$repo" rev-parse HEAD)
python3 - "$repo" "$crate/Cargo.toml" "$rev" <<'PY'
import re, sys, tomllib
repo, path, rev = sys.argv[1:]
ws = tomllib.load(open(f"{repo}/Cargo.toml", "rb"))
deps = ws["workspace"]["dependencies"]
pkg = ws["workspace"]["package"]
text = open(path).read()
def spec(name):
    d = deps[name]
    if isinstance(d, str):
        return f'"{d}"'
    if "path" in d:
        return f'{{ git = "file://{repo}", rev = "{rev}" }}'
    items = ", ".join(f"{k} = {repr(v).replace(chr(39), chr(34)).lower() if isinstance(v, bool) else repr(v).replace(chr(39), chr(34))}" for k, v in d.items())
    return "{ " + items + " }"
text = re.sub(r"^(version|edition|rust-version|license)\.workspace = true$", lambda m: f'{m.group(1)} = "{pkg[m.group(1)]}"', text, flags=re.M)
text = re.sub(r"^([\w-]+)\.workspace = true$", lambda m: f"{m.group(1)} = {spec(m.group(1))}", text, flags=re.M)
text = re.sub(r"^\[lints\]\nworkspace = true\n", "", text, flags=re.M)
# The same profile as the repository's, so that the shared target folder's artifacts are reused.
text += '\n[workspace]\n\n[profile.dev]\nopt-level = 1\n\n[profile.dev.package."*"]\nopt-level = 3\n'
open(path, "w").write(text)
PY
# The crate's config points at the bundled data relative to the repository.
sed -i "s#\.\./\.\./data/#$repo/data/#" "$crate/huber.toml"
cp "$repo/Cargo.lock" "$crate/Cargo.lock"
cd "$crate"
export CARGO_TARGET_DIR="$repo/target"
cargo build --bin dprox-example-custom-objective
out="$work/run"
"$CARGO_TARGET_DIR/debug/dprox-example-custom-objective" sim huber.toml --iterations 20 -q --out "$out"
test -s "$out/metrics.csv"
echo "ok: examples/custom-objective builds and runs as an outside crate depending on dprox through git ($rev)"
