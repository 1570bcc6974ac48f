#!/bin/bash
# Background eval: modes interleaved in chunks of 5 problems so machine load hits all modes alike.
cd "$(dirname "$0")"
BIN=${BIN:-$PWD/../../../target/release}  # scot, coordinator, draft-node, target-node
export PATH=$BIN:$PATH
URL=http://127.0.0.1:50551
if ! $BIN/scot eval --help >/dev/null; then exit 1; fi
nice -n 19 $BIN/scot up --port 50551 > up.log 2>&1 &
echo $! > up.pid
for i in $(seq 1 600); do grep -q "cluster up" up.log && break; sleep 2; done
sleep 5
COMMON="--coordinator $URL --draft-max-tokens 512 --thinking-max-tokens 512 --answer-max-tokens 96 --seed 0 --timeout-secs 3600 --no-progress"
run_chunk() { # data name offset
  for mode in target-only draft-only scot; do
    nice -n 19 $BIN/scot eval $COMMON --data ${DATA:-../../../../shared/data}/$1.jsonl --mode $mode \
      --offset $3 --limit 5 --out results/$2-$mode.jsonl >> eval.log 2>&1
  done
}
mkdir -p results
for off in $(seq 0 5 95); do
  run_chunk gsm8k gsm8k $off
  if [ $off -lt 50 ]; then run_chunk math500 math500 $off; fi
done
echo DONE >> eval.log
