export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MLFLOW_ENABLE_ASYNC_LOGGING=false
T0=$(date +%s)
step() { echo "=== [$(( $(date +%s) - T0 ))s] $*"; }
clean() { grep -a -v -E "it/s\]|s/it\]|%\|" "$1" | tail -n "${2:-20}"; }
