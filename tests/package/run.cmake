# SPDX-License-Identifier: MIT
# Builds and runs tests/package/consumer the three ways the README promises
# npipe can be used (MODE):
#   install          install the built npipe (NPIPE_BUILD_DIR) into a scratch PREFIX
#   find_package     find_package(npipe) in PREFIX
#   pkg_config       the compiler with `pkg-config --cflags --libs npipe` from PREFIX
#   add_subdirectory npipe's sources (NPIPE_SOURCE_DIR) inside the consumer's build
# Each way also checks that npipe keeps its own build choices to itself: the
# consumer uses Asio's deprecated names (asio::io_service), which
# ASIO_NO_DEPRECATED would remove, and pkg-config's flags force no -std=.
# The consumer builds without optimisation (no build type): what is checked
# is how npipe is found and built, and -O2 would double the time it takes.
# add_subdirectory builds npipe without unity builds (NPIPE_UNITY_BUILD=OFF):
# each source file compiled alone, so one that misses an include fails here.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(prefix ${PREFIX})
if(NOT CXX_COMPILER)
  set(CXX_COMPILER c++)
endif()

function(run_step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

function(run_consumer exe)
  run_step(${exe})
  if(NOT last_output MATCHES "consumer: ok")
    message(FATAL_ERROR "${exe} printed: ${last_output}")
  endif()
endfunction()

# The public headers by file name, for the consumer's one-header-per-TU check.
function(public_headers out dir)
  file(GLOB headers RELATIVE ${dir} ${dir}/*.hpp)
  if(NOT headers)
    message(FATAL_ERROR "no public headers in ${dir}")
  endif()
  string(REPLACE ";" "," headers "${headers}") # one -D argument, whatever the steps do with lists
  set(${out} "${headers}" PARENT_SCOPE)
endfunction()

if(MODE STREQUAL "install")
  file(REMOVE_RECURSE ${prefix})
  run_step(${CMAKE_COMMAND} --install ${NPIPE_BUILD_DIR} --prefix ${prefix})
elseif(MODE STREQUAL "find_package")
  public_headers(headers ${prefix}/include/npipe)
  run_step(${CMAKE_COMMAND} -S ${CONSUMER_SOURCE} -B ${WORK_DIR}/consumer -G ${GENERATOR}
           -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=
           "-DNPIPE_PUBLIC_HEADERS=${headers}")
  run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer --parallel 2)
  run_consumer(${WORK_DIR}/consumer/consumer)
elseif(MODE STREQUAL "add_subdirectory")
  public_headers(headers ${NPIPE_SOURCE_DIR}/include/npipe)
  run_step(${CMAKE_COMMAND} -S ${CONSUMER_SOURCE} -B ${WORK_DIR}/consumer -G ${GENERATOR}
           -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DNPIPE_SUBDIR=${NPIPE_SOURCE_DIR} -DCMAKE_BUILD_TYPE=
           -DNPIPE_UNITY_BUILD=OFF
           "-DNPIPE_PUBLIC_HEADERS=${headers}")
  # As a subproject npipe builds only its library: no tests, tools or install.
  if(EXISTS ${WORK_DIR}/consumer/npipe/tests OR EXISTS ${WORK_DIR}/consumer/npipe/tools)
    message(FATAL_ERROR "npipe as a subdirectory configured its tests or tools")
  endif()
  run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer --parallel 2)
  run_consumer(${WORK_DIR}/consumer/consumer)
elseif(MODE STREQUAL "pkg_config")
  find_program(PKG_CONFIG pkg-config REQUIRED)
  file(GLOB pcdirs ${prefix}/lib*/pkgconfig ${prefix}/lib/*/pkgconfig)
  string(REPLACE ";" ":" pcpath "${pcdirs}")
  set(ENV{PKG_CONFIG_PATH} ${pcpath})
  foreach(what cflags libs)
    execute_process(COMMAND ${PKG_CONFIG} --${what} npipe OUTPUT_VARIABLE ${what} RESULT_VARIABLE rc
                    OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "pkg-config does not know npipe (PKG_CONFIG_PATH=${pcpath})")
    endif()
  endforeach()
  # The language standard and Asio's configuration are the consumer's to choose.
  if(cflags MATCHES "-std=|ASIO_NO_DEPRECATED")
    message(FATAL_ERROR "pkg-config --cflags npipe imposes npipe's own choices: ${cflags}")
  endif()
  separate_arguments(flags UNIX_COMMAND "${cflags} ${libs}")
  # C++20 is a requirement pkg-config cannot state: the consumer asks for it.
  run_step(${CXX_COMPILER} -std=c++20 ${CONSUMER_SOURCE}/main.cpp ${flags} -o ${WORK_DIR}/consumer_pc)
  run_consumer(${WORK_DIR}/consumer_pc)
else()
  message(FATAL_ERROR "MODE must be install, find_package, pkg_config or add_subdirectory, not '${MODE}'")
endif()
message(STATUS "package test (${MODE}) passed")
