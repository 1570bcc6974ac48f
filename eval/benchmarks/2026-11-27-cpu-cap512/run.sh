#!/bin/bash
# Quiet-machine eval: modes interleaved in chunks of 5 problems so any drift in machine load hits all
# modes alike. Resumable: `scot eval` skips ids already answered in results/.
# Other runs on these settings reuse this driver with RUN_DIR (where results/ and the logs go),
# MODES, SCOT_MODE_ARGS (extra `scot eval` arguments for scot mode only), ORDER, PORT and UP_ARGS
# (extra `scot up` arguments, e.g. a selection prior).
HERE=$(cd "$(dirname "$0")" && pwd)
cd "${RUN_DIR:-$HERE}"
BIN=${BIN:-$HERE/../../../target/release}  # scot, coordinator, draft-node, target-node
DATA=${DATA:-$HERE/../../../../shared/data}
export PATH=$BIN:$PATH
PORT=${PORT:-50552}
URL=http://127.0.0.1:$PORT
MODES=${MODES:-target-only draft-only scot}
if ! $BIN/scot eval --help >/dev/null; then exit 1; fi
if [ -z "$REUSE_CLUSTER" ]; then  # REUSE_CLUSTER=1: a cluster from an earlier start still serves $PORT
  $BIN/scot up --port $PORT $UP_ARGS > up.log 2>&1 &
  echo $! > up.pid
  for i in $(seq 1 600); do grep -q "cluster up" up.log && break; sleep 2; done
  sleep 5
fi
COMMON="--coordinator $URL --draft-max-tokens 512 --thinking-max-tokens 512 --answer-max-tokens 96 --seed 0 --timeout-secs 3600 --no-progress"
run_chunk() { # data-file result-name offset
  for mode in $MODES; do
    extra=""
    [ "$mode" = scot ] && extra=$SCOT_MODE_ARGS
    $BIN/scot eval $COMMON --data $DATA/$1.jsonl --mode $mode \
      --offset $3 --limit 5 --out results/$2-$mode.jsonl $extra >> eval.log 2>&1
  done
  echo "$(date -u +%T) chunk $2 $3 done" >> eval.log
}
mkdir -p results
# ORDER: "gsm8k:0 math500:0 ..." to override; default: all 100 GSM8K problems, then 50 MATH-500.
if [ -z "$ORDER" ]; then
  for off in $(seq 0 5 95); do ORDER="$ORDER gsm8k:$off"; done
  for off in $(seq 0 5 45); do ORDER="$ORDER math500:$off"; done
fi
for item in $ORDER; do
  name=${item%%:*}; off=${item##*:}
  run_chunk $name $name $off
done
echo DONE >> eval.log
kill $(cat up.pid)
