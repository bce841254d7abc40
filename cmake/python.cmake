# SPDX-License-Identifier: MIT
# The Python package (python/npipe): pure Python over the C interface
# through ctypes, so there is nothing to compile; it needs the shared
# library. Which interpreter the tests use and where `cmake --install`
# puts the package:
#
#   NPIPE_PYTHON               the interpreter (default: the system's,
#                              /usr/bin/python3, whose packages Debian's
#                              python3-pytest serves; else python3 on PATH)
#   NPIPE_INSTALL_PYTHON       install the package (default: with the shared library)
#   NPIPE_PYTHON_INSTALL_DIR   relative to the prefix (default: where that
#                              interpreter looks under the prefix, e.g.
#                              lib/python3.11/dist-packages on Debian)
if(NOT DEFINED NPIPE_PYTHON)
  if(EXISTS /usr/bin/python3 AND NOT CMAKE_CROSSCOMPILING)
    set(npipe_python_default /usr/bin/python3)
  else()
    find_program(npipe_python_default NAMES python3 python)
  endif()
endif()
set(NPIPE_PYTHON "${npipe_python_default}" CACHE FILEPATH "Python interpreter for the Python package's tests")

set(npipe_python_dir_default python)
if(NPIPE_PYTHON AND NOT CMAKE_CROSSCOMPILING)
  execute_process(
    COMMAND ${NPIPE_PYTHON} -c
            "import sys; print('python%d.%d' % sys.version_info[:2]); print(any(p.endswith('dist-packages') for p in sys.path))"
    OUTPUT_VARIABLE npipe_python_facts OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE npipe_python_rc)
  if(npipe_python_rc EQUAL 0)
    string(REPLACE "\n" ";" npipe_python_facts "${npipe_python_facts}")
    list(GET npipe_python_facts 0 npipe_python_version)
    list(GET npipe_python_facts 1 npipe_python_debian)
    if(npipe_python_debian STREQUAL "True")
      set(npipe_python_dir_default ${CMAKE_INSTALL_LIBDIR}/${npipe_python_version}/dist-packages)
    else()
      set(npipe_python_dir_default ${CMAKE_INSTALL_LIBDIR}/${npipe_python_version}/site-packages)
    endif()
  endif()
endif()
set(NPIPE_PYTHON_INSTALL_DIR "${npipe_python_dir_default}" CACHE STRING
    "Where, under the install prefix, the Python package goes")

set(npipe_python_install_default OFF)
if(NPIPE_INSTALL AND NPIPE_BUILD_SHARED)
  set(npipe_python_install_default ON)
endif()
option(NPIPE_INSTALL_PYTHON "Install the Python package (needs the shared library)" ${npipe_python_install_default})

if(NPIPE_INSTALL_PYTHON)
  if(NOT NPIPE_BUILD_SHARED)
    message(FATAL_ERROR "NPIPE_INSTALL_PYTHON needs the shared library (NPIPE_BUILD_SHARED=ON)")
  endif()
  install(DIRECTORY python/npipe DESTINATION ${NPIPE_PYTHON_INSTALL_DIR} PATTERN __pycache__ EXCLUDE)
  # The installed package loads the library installed with it: _install.py
  # names it, written at install time so that `--prefix` and DESTDIR work.
  if(WIN32)
    set(npipe_python_lib "${CMAKE_INSTALL_BINDIR}/$<TARGET_FILE_NAME:npipe_shared>")
  else()
    set(npipe_python_lib "${CMAKE_INSTALL_LIBDIR}/$<TARGET_SONAME_FILE_NAME:npipe_shared>")
  endif()
  install(CODE "
    set(npipe_py_dir \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${NPIPE_PYTHON_INSTALL_DIR}/npipe\")
    get_filename_component(npipe_py_lib \"\${CMAKE_INSTALL_PREFIX}/${npipe_python_lib}\" ABSOLUTE)
    file(WRITE \"\${npipe_py_dir}/_install.py\"
         \"# Written by cmake --install: the npipe library installed with this package.\\nLIBRARY = r'\${npipe_py_lib}'\\n\")
    message(STATUS \"Installing: \${npipe_py_dir}/_install.py (LIBRARY = \${npipe_py_lib})\")
  ")
endif()
