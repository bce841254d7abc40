# SPDX-License-Identifier: MIT
# Builds and runs tests/package/consumer the three ways the README promises
# npipe can be used (MODE):
#   install          install the built npipe (NPIPE_BUILD_DIR) into a scratch PREFIX
#   find_package     find_package(npipe) in PREFIX
#   pkg_config       the compiler with `pkg-config --cflags --libs npipe` from PREFIX
#   add_subdirectory npipe's sources (NPIPE_SOURCE_DIR) inside the consumer's build
#   python           the Python package installed in PREFIX (PYTHON_DIR), run by PYTHON
#                    with nothing but PYTHONPATH: it must load the library installed with it
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

# Whether `exe` loads libnpipe.so.0 (WANT: shared) or has npipe inside it
# (static): the test is only worth something if it checks what it linked.
function(check_linkage exe want)
  execute_process(COMMAND readelf -d ${exe} OUTPUT_VARIABLE dyn RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "readelf -d ${exe} failed")
  endif()
  if(dyn MATCHES "NEEDED[^\n]*libnpipe\\.so\\.0")
    set(got shared)
  else()
    set(got static)
  endif()
  if(NOT got STREQUAL want)
    message(FATAL_ERROR "${exe} links npipe ${got}, not ${want}:\n${dyn}")
  endif()
endfunction()

# The shared consumers CMake builds, where npipe built its shared library.
function(run_shared_consumers dir)
  if(EXISTS ${dir}/consumer_shared)
    check_linkage(${dir}/consumer_shared shared)
    run_consumer(${dir}/consumer_shared)
    check_linkage(${dir}/consumer_c shared)
    run_consumer(${dir}/consumer_c)
  elseif(EXPECT_SHARED)
    message(FATAL_ERROR "npipe built a shared library, but the consumer found no npipe::shared")
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
elseif(MODE STREQUAL "python")
  set(script [=[
import os, sys, threading
import npipe
lib = npipe._native.lib._name
assert lib.startswith(sys.argv[1]), f"loaded {lib}, not the library installed in {sys.argv[1]}"
with npipe.Server("package-python") as s:
    def serve():
        with s.accept(timeout=30) as c:
            c.write(c.receive()[::-1])
    t = threading.Thread(target=serve)
    t.start()
    with npipe.connect("package-python") as c:
        assert c.transact(b"abc") == b"cba"
    t.join()
print("consumer: ok", npipe.__version__, lib)
]=])
  file(MAKE_DIRECTORY ${WORK_DIR}/pipes)
  run_step(${CMAKE_COMMAND} -E env --unset=NPIPE_LIBRARY PYTHONPATH=${prefix}/${PYTHON_DIR}
           NPIPE_DIR=${WORK_DIR}/pipes PYTHONDONTWRITEBYTECODE=1 ${PYTHON} -c "${script}" ${prefix})
  if(NOT last_output MATCHES "consumer: ok")
    message(FATAL_ERROR "the installed Python package printed: ${last_output}")
  endif()
  message(STATUS "${last_output}")
elseif(MODE STREQUAL "find_package")
  public_headers(headers ${prefix}/include/npipe)
  run_step(${CMAKE_COMMAND} -S ${CONSUMER_SOURCE} -B ${WORK_DIR}/consumer -G ${GENERATOR}
           -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=
           "-DNPIPE_PUBLIC_HEADERS=${headers}")
  run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer --parallel 2)
  check_linkage(${WORK_DIR}/consumer/consumer static)
  run_consumer(${WORK_DIR}/consumer/consumer)
  run_shared_consumers(${WORK_DIR}/consumer)
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
  check_linkage(${WORK_DIR}/consumer/consumer static)
  run_consumer(${WORK_DIR}/consumer/consumer)
  run_shared_consumers(${WORK_DIR}/consumer)
elseif(MODE STREQUAL "pkg_config")
  find_program(PKG_CONFIG pkg-config REQUIRED)
  file(GLOB pcdirs ${prefix}/lib*/pkgconfig ${prefix}/lib/*/pkgconfig)
  string(REPLACE ";" ":" pcpath "${pcdirs}")
  set(ENV{PKG_CONFIG_PATH} ${pcpath})
  # npipe.pc: the shared library where npipe built one (the linker prefers
  # libnpipe.so for -lnpipe), else the static one; npipe-static.pc: static.
  if(EXPECT_SHARED)
    set(npipe_pc_linkage shared)
  else()
    set(npipe_pc_linkage static)
  endif()
  foreach(pc npipe npipe-static)
    foreach(what cflags libs)
      execute_process(COMMAND ${PKG_CONFIG} --${what} ${pc} OUTPUT_VARIABLE ${what} RESULT_VARIABLE rc
                      OUTPUT_STRIP_TRAILING_WHITESPACE)
      if(NOT rc EQUAL 0)
        message(FATAL_ERROR "pkg-config does not know ${pc} (PKG_CONFIG_PATH=${pcpath})")
      endif()
    endforeach()
    # The language standard and Asio's configuration are the consumer's to choose.
    if(cflags MATCHES "-std=|ASIO_NO_DEPRECATED")
      message(FATAL_ERROR "pkg-config --cflags ${pc} imposes npipe's own choices: ${cflags}")
    endif()
    separate_arguments(flags UNIX_COMMAND "${cflags} ${libs}")
    separate_arguments(cflags_list UNIX_COMMAND "${cflags}")
    # C++20 is a requirement pkg-config cannot state: the consumer asks for it.
    set(exe ${WORK_DIR}/consumer_${pc})
    run_step(${CXX_COMPILER} -std=c++20 ${CONSUMER_SOURCE}/main.cpp ${flags} -o ${exe})
    if(pc STREQUAL "npipe")
      check_linkage(${exe} ${npipe_pc_linkage})
    else()
      check_linkage(${exe} static)
    endif()
    # As a user would run it from a prefix outside the loader's path.
    set(ENV{LD_LIBRARY_PATH} ${prefix}/${LIBDIR})
    run_consumer(${exe})
    if(pc STREQUAL "npipe" AND EXPECT_SHARED)
      # A C program, with the C compiler: npipe.h and the shared library.
      if(NOT C_COMPILER)
        set(C_COMPILER cc)
      endif()
      run_step(${C_COMPILER} -std=c99 -Wall -Wextra -Werror ${CONSUMER_SOURCE}/consumer.c ${flags}
               -o ${WORK_DIR}/consumer_c_pc)
      check_linkage(${WORK_DIR}/consumer_c_pc shared)
      run_consumer(${WORK_DIR}/consumer_c_pc)
    endif()
    unset(ENV{LD_LIBRARY_PATH})
    if(pc STREQUAL "npipe" AND EXPECT_SHARED)
      # npipe/async.hpp refuses the shared library, with a message that says why.
      file(WRITE ${WORK_DIR}/async_shared.cpp "#include <npipe/async.hpp>\nint main() {}\n")
      execute_process(COMMAND ${CXX_COMPILER} -std=c++20 -fsyntax-only ${cflags_list} ${WORK_DIR}/async_shared.cpp
                      RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_QUIET)
      if(rc EQUAL 0 OR NOT err MATCHES "needs the static npipe library")
        message(FATAL_ERROR "npipe/async.hpp compiled with pkg-config --cflags npipe (${cflags}): ${err}")
      endif()
    endif()
  endforeach()
else()
  message(FATAL_ERROR "MODE must be install, find_package, pkg_config, add_subdirectory or python, not '${MODE}'")
endif()
message(STATUS "package test (${MODE}) passed")
