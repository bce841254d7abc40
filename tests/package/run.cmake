# SPDX-License-Identifier: MIT
# Installs the built npipe into a scratch prefix, then builds and runs a
# consumer against it twice: with find_package(npipe) and with pkg-config.
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)

function(run_step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

run_step(${CMAKE_COMMAND} --install ${NPIPE_BUILD_DIR} --prefix ${prefix})
run_step(${CMAKE_COMMAND} -S ${CONSUMER_SOURCE} -B ${WORK_DIR}/consumer -G ${GENERATOR}
         -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer)
run_step(${WORK_DIR}/consumer/consumer)
if(NOT last_output MATCHES "consumer: ok")
  message(FATAL_ERROR "consumer printed: ${last_output}")
endif()

find_program(PKG_CONFIG pkg-config)
if(PKG_CONFIG)
  file(GLOB pcdirs ${prefix}/lib*/pkgconfig ${prefix}/lib/*/pkgconfig)
  string(REPLACE ";" ":" pcpath "${pcdirs}")
  set(ENV{PKG_CONFIG_PATH} ${pcpath})
  execute_process(COMMAND ${PKG_CONFIG} --cflags --libs npipe OUTPUT_VARIABLE flags RESULT_VARIABLE rc
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config does not know npipe (PKG_CONFIG_PATH=${pcpath})")
  endif()
  separate_arguments(flags UNIX_COMMAND "${flags}")
  run_step(c++ ${CONSUMER_SOURCE}/main.cpp ${flags} -o ${WORK_DIR}/consumer_pc)
  run_step(${WORK_DIR}/consumer_pc)
endif()
message(STATUS "package test passed")
