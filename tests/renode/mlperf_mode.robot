*** Comments ***
Renode's own test style (renode-test, renode-keywords) for the renode-stm32f4 board running the
MLPerf Tiny mode firmware: the EEMBC text protocol is line based, which is what Renode's UART
terminal tester checks. tests/test_renode.py builds the firmware, generates the script (without a
server socket: the terminal tester is the UART's client) and runs:

    renode-test tests/renode/mlperf_mode.robot --variable RESC:/path/run.resc \
        --variable "INPUT_HEX:<the input tensor in hex, chunks separated by spaces>" \
        --variable INPUT_BYTES:<its length> \
        --variable RESULTS:<the m-results line TFLite Micro predicts>

Skipped by tests/test_renode.py when renode-test is not on PATH (it is not, in this repository).

*** Settings ***
Suite Setup                   Setup
Suite Teardown                Teardown
Test Teardown                 Test Teardown
Resource                      ${RENODEKEYWORDS}
Library                       String

*** Variables ***
${RESC}                       ${CURDIR}/../../build/renode/renode-stm32f4-mlperf.resc
${UART}                       sysbus.usart2
${INPUT_HEX}                  ${EMPTY}
${INPUT_BYTES}                0
${RESULTS}                    ${EMPTY}

*** Keywords ***
Boot MLPerf Firmware
    Execute Command           include @${RESC}
    Create Terminal Tester    ${UART}    timeout=30
    Start Emulation
    Wait For Line On Uart     m-init-done
    Wait For Line On Uart     m-ready

Send Command
    [Arguments]               ${command}
    Write Line To Uart        ${command}%    waitForEcho=false

*** Test Cases ***
Should Answer Name And Profile
    Boot MLPerf Firmware
    Send Command              name
    Wait For Line On Uart     m-name-dut-[slingshot]
    Wait For Line On Uart     m-ready
    Send Command              profile
    Wait For Line On Uart     m-profile-[slingshot
    Wait For Line On Uart     m-ready

Should Reject Unknown Commands
    Boot MLPerf Firmware
    Send Command              bogus
    Wait For Line On Uart     e-[Unknown command: bogus]
    Wait For Line On Uart     m-ready

Should Infer Like TFLite Micro
    Boot MLPerf Firmware
    Send Command              db load ${INPUT_BYTES}
    Wait For Line On Uart     m-[Expecting ${INPUT_BYTES} bytes]
    Wait For Line On Uart     m-ready
    @{chunks}=                Split String    ${INPUT_HEX}
    FOR    ${chunk}    IN    @{chunks}
        Send Command          db ${chunk}
        Wait For Line On Uart    m-ready
    END
    Send Command              db print
    Wait For Line On Uart     m-buffer-
    Wait For Line On Uart     m-ready
    Send Command              infer 2 1
    Wait For Line On Uart     m-warmup-done
    Wait For Line On Uart     m-infer-start-2
    Wait For Line On Uart     m-lap-us-\\d+    treatAsRegex=true
    Wait For Line On Uart     m-infer-done
    Wait For Line On Uart     ${RESULTS}
    Wait For Line On Uart     m-ready
