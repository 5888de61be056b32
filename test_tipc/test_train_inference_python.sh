#!/bin/bash
# TIPC's basic chain: train, evaluate, export and predict as CONFIG says, each step reported
# as "Run successfully with command - ..." or "Run failed with command - ...".
#   bash test_tipc/test_train_inference_python.sh CONFIG MODE
# MODE: lite_train_lite_infer (train on test_tipc/lite_data, then the rest on that model) or
# whole_infer (export the published checkpoint of CONFIG's train_model and predict with it).
# Run from the repository's root; exits 1 if any step failed.
source test_tipc/common_func.sh
FILENAME=$1
MODE=$2
IFS=$'\n'
lines=($(awk 'NR>=1 && NR<=32' "${FILENAME}"))

model_name=$(func_parser_value "${lines[1]}")
python=$(func_parser_value "${lines[2]}")
use_gpu_key=$(func_parser_key "${lines[4]}")
use_gpu_value=$(func_parser_value "${lines[4]}")
epoch_key=$(func_parser_key "${lines[5]}")
epoch_value=$(func_parser_params "${lines[5]}" "${MODE}")
save_model_key=$(func_parser_key "${lines[6]}")
save_model_value=$(func_parser_value "${lines[6]}")
batch_key=$(func_parser_key "${lines[7]}")
batch_value=$(func_parser_params "${lines[7]}" "${MODE}")
pretrain_key=$(func_parser_key "${lines[8]}")
train_model_name=$(func_parser_value "${lines[9]}")
data_key=$(func_parser_key "${lines[10]}")
data_value=$(func_parser_value "${lines[10]}")
train_py=$(func_parser_value "${lines[13]}")
eval_py=$(func_parser_value "${lines[16]}")
save_infer_key=$(func_parser_key "${lines[19]}")
save_infer_value=$(func_parser_value "${lines[19]}")
export_weight_key=$(func_parser_key "${lines[20]}")
export_py=$(func_parser_value "${lines[21]}")
published_model=$(func_parser_value "${lines[23]}")
infer_export_py=$(func_parser_value "${lines[24]}")
infer_py=$(func_parser_value "${lines[26]}")
infer_gpu_key=$(func_parser_key "${lines[27]}")
infer_gpu_values=$(func_parser_value "${lines[27]}")
infer_batch_key=$(func_parser_key "${lines[28]}")
infer_batch_values=$(func_parser_value "${lines[28]}")
infer_model_key=$(func_parser_key "${lines[29]}")
images_key=$(func_parser_key "${lines[30]}")
images_value=$(func_parser_value "${lines[30]}")
benchmark_key=$(func_parser_key "${lines[31]}")
benchmark_value=$(func_parser_value "${lines[31]}")

# LOG_PATH is removed below: a MODE or model name that walks out of ./log/ (../../results)
# would remove another folder, so both are refused unless they are plain names.
case "${MODE}" in
    lite_train_lite_infer|whole_infer) ;;
    *) echo "MODE must be lite_train_lite_infer or whole_infer, got '${MODE}'" >&2; exit 2 ;;
esac
if ! [[ "${model_name}" =~ ^[A-Za-z0-9_-]+$ ]]; then
    echo "the model_name of ${FILENAME} must be letters, digits, '-' or '_', got '${model_name}'" >&2
    exit 2
fi
LOG_PATH="./log/${model_name}/${MODE}"
rm -rf "${LOG_PATH}"  # this chain's own folder: each run of it starts afresh
mkdir -p "${LOG_PATH}"
status_log="${LOG_PATH}/results_python.log"
: > "${status_log}"
failed=0

# run_step COMMAND LOG: run it with its output in LOG, then report it
function run_step() {
    local command=$1 log=$2
    eval "${command}" > "${log}" 2>&1
    local status=$?
    [ "${status}" -eq 0 ] || { failed=1; tail -n 3 "${log}"; }
    status_check "${status}" "${command}" "${status_log}"
}

# infer_all MODEL_DIR: predict with every use_gpu and batch size of the config
function infer_all() {
    local model_dir=$1 use_gpu batch_size
    IFS='|'
    for use_gpu in ${infer_gpu_values}; do
        for batch_size in ${infer_batch_values}; do
            local device=$([ "${use_gpu}" = "True" ] && echo gpu || echo cpu)
            run_step "${python} ${infer_py} $(func_set_params "${infer_gpu_key}" "${use_gpu}") \
$(func_set_params "${infer_model_key}" "${model_dir}") $(func_set_params "${infer_batch_key}" "${batch_size}") \
$(func_set_params "${images_key}" "${images_value}") $(func_set_params "${benchmark_key}" "${benchmark_value}")" \
                "${LOG_PATH}/python_infer_${device}_batchsize_${batch_size}.log"
        done
    done
    IFS=$'\n'
}

if [ "${MODE}" = "whole_infer" ]; then
    run_step "${python} ${infer_export_py} $(func_set_params "${export_weight_key}" "${published_model}") \
$(func_set_params "${save_infer_key}" "${save_infer_value}")" "${LOG_PATH}/export.log"
    infer_all "${save_infer_value}"
else
    out="${LOG_PATH}/norm_train"
    # main.py's run folder, ${out}/<run name>/, holds its checkpoints, log and glimpses
    run_step "${python} ${train_py} $(func_set_params "${use_gpu_key}" "${use_gpu_value}") \
$(func_set_params "${save_model_key}" "${out}") \
$(func_set_params "${epoch_key}" "${epoch_value}") $(func_set_params "${batch_key}" "${batch_value}") \
$(func_set_params "${data_key}" "${data_value}")" "${LOG_PATH}/train.log"
    run_step "${python} ${eval_py} $(func_set_params "${use_gpu_key}" "${use_gpu_value}") \
$(func_set_params "${pretrain_key}" "${out}/${train_model_name}") $(func_set_params "${data_key}" "${data_value}") \
--logs_dir=${out}" "${LOG_PATH}/eval.log"
    run_step "${python} ${export_py} $(func_set_params "${export_weight_key}" "${out}/${train_model_name}") \
$(func_set_params "${save_infer_key}" "${out}/inference")" "${LOG_PATH}/export.log"
    infer_all "${out}/inference"
fi
exit ${failed}
