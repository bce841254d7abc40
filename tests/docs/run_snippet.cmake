# SPDX-License-Identifier: MIT
# One documentation snippet's test (see CMakeLists.txt here): build TARGET in
# BUILD_DIR and, for KIND run, run PROGRAM with a private pipe directory.
# Every failure names the snippet's file and line (WHERE).
file(TIMESTAMP ${PAGE} page_time "%s")
file(TIMESTAMP ${STAMP} stamp_time "%s")
if(page_time GREATER stamp_time)
  message(FATAL_ERROR "${WHERE}: the page changed after CMake took its C++ blocks out: build (which "
                      "configures again), then run the tests")
endif()
if(KIND STREQUAL "error")
  message(FATAL_ERROR "${WHERE}: ${MESSAGE}")
endif()

set(config)
if(CONFIG)
  set(config --config ${CONFIG})
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --target ${TARGET} ${config}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${WHERE}: this C++ block of the documentation does not build "
                      "(the compiler's lines point into the Markdown):\n${out}${err}")
endif()
if(NOT KIND STREQUAL "run")
  message(STATUS "${WHERE}: builds")
  return()
endif()

# A private NPIPE_DIR: the snippets use names like tpipe, which the demo and
# other programs on this machine may use too.
string(RANDOM LENGTH 12 ALPHABET abcdefghijklmnopqrstuvwxyz0123456789 suffix)
set(dir /tmp/npipe-doc-${suffix})
file(MAKE_DIRECTORY ${dir})
set(ENV{NPIPE_DIR} ${dir})
execute_process(COMMAND ${PROGRAM} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT ${RUN_TIMEOUT})
file(REMOVE_RECURSE ${dir})
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${WHERE}: this C++ program of the documentation failed (${rc}; a whole program must "
                      "finish by itself within ${RUN_TIMEOUT} s, or be marked <!-- snippet: compile-only (why) -->):"
                      "\n${out}${err}")
endif()
message(STATUS "${WHERE}: builds and runs:\n${out}${err}")
