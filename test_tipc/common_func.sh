#!/bin/bash
# Helpers of the TIPC chain: read a config line "key:value" (the value may hold
# "mode=value|mode=value" alternatives) and report each command's status.

# The part of a config line before its first ':'.
function func_parser_key() {
    local line=$1
    echo "${line%%:*}"
}

# The part of a config line after its first ':'.
function func_parser_value() {
    local line=$1
    echo "${line#*:}"
}

# The value of a config line for MODE: of "MODE=value" among "|"-separated
# alternatives, or the whole value when it names no mode.
function func_parser_params() {
    local line=$1 mode=$2
    local value=$(func_parser_value "${line}")
    local option
    IFS='|' read -ra options <<< "${value}"
    for option in "${options[@]}"; do
        if [[ "${option}" == "${mode}="* ]]; then
            echo "${option#*=}"
            return
        fi
    done
    [[ "${value}" == *"="* ]] || echo "${value}"
}

# "key=value", or nothing when the value is null or empty.
function func_set_params() {
    local key=$1 value=$2
    if [ -z "${key}" ] || [ "${key}" = "null" ] || [ -z "${value}" ] || [ "${value}" = "null" ]; then
        echo " "
    else
        echo "${key}=${value}"
    fi
}

# Print and log whether a command succeeded: status_check STATUS COMMAND LOG
function status_check() {
    local status=$1 command=$2 log=$3
    if [ "${status}" -eq 0 ]; then
        echo -e "\033[33m Run successfully with command - ${command}!  \033[0m" | tee -a "${log}"
    else
        echo -e "\033[33m Run failed with command - ${command}!  \033[0m" | tee -a "${log}"
    fi
}
