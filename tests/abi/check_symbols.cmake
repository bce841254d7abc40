# SPDX-License-Identifier: MIT
# The shared library's exports against the list kept in the repository, so
# that an accidental ABI change (a symbol added, removed or changed in its
# signature) fails a test instead of reaching users.
#   LIB       the built library (libnpipe.so.0.x.y or npipe.dll)
#   EXPECTED  abi/libnpipe.so.symbols: one exported symbol per line,
#             mangled, with its version (name@@NPIPE_0)
#   NM        nm (Linux) or OBJDUMP (Windows: objdump -p lists the DLL's
#             export table); FILT: c++filt, to show changes readably
#   KIND      elf: every export must match EXPECTED exactly
#             dll: the DLL's C interface (npipe_*) must match EXPECTED's
#             (its C++ names are mangled differently on Windows: long is
#             32 bits there, so they are not compared)
#   UPDATE    ON: rewrite EXPECTED from LIB instead (after a deliberate
#             change: cmake -DUPDATE=ON ... -P tests/abi/check_symbols.cmake)
foreach(var LIB EXPECTED KIND)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_symbols.cmake needs -D${var}=...")
  endif()
endforeach()

# The tool that lists the exports, the pattern of one exported name in its
# output, and what to append to make it a line of EXPECTED.
if(KIND STREQUAL "elf")
  # POSIX format: "name type value size"; defined symbols only.
  set(list_command ${NM} -D --defined-only -P ${LIB})
  set(row "^([^ ]+) [A-Za-z] ")
  set(suffix "")
elseif(KIND STREQUAL "dll")
  # The "[Ordinal/Name Pointer] Table" rows: "\t[   3] npipe_call"
  set(list_command ${OBJDUMP} -p ${LIB})
  set(row "^[ \t]*\\[ *[0-9]+\\] (npipe_[A-Za-z0-9_]+)$")
  set(suffix "@@NPIPE_0")
else()
  message(FATAL_ERROR "KIND must be elf or dll, not '${KIND}'")
endif()
execute_process(COMMAND ${list_command} OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${list_command} failed")
endif()
string(REPLACE "\n" ";" lines "${out}")
set(actual)
foreach(line IN LISTS lines)
  if(line MATCHES "${row}")
    list(APPEND actual "${CMAKE_MATCH_1}${suffix}")
  endif()
endforeach()
list(SORT actual)
list(REMOVE_DUPLICATES actual)
if(NOT actual)
  message(FATAL_ERROR "no exported symbols found in ${LIB}")
endif()

if(UPDATE)
  list(JOIN actual "\n" text)
  file(WRITE ${EXPECTED} "${text}\n")
  list(LENGTH actual n)
  message(STATUS "wrote ${n} symbols to ${EXPECTED}")
  return()
endif()

file(STRINGS ${EXPECTED} expected)
if(KIND STREQUAL "dll")
  list(FILTER expected INCLUDE REGEX "^npipe_")
endif()
list(SORT expected)

set(added ${actual})
list(REMOVE_ITEM added ${expected})
set(removed ${expected})
list(REMOVE_ITEM removed ${actual})
if(added OR removed)
  set(report "")
  foreach(what added removed)
    foreach(sym IN LISTS ${what})
      set(shown "${sym}")
      if(FILT)
        string(REGEX REPLACE "@.*" "" bare "${sym}")
        execute_process(COMMAND ${FILT} "${bare}" OUTPUT_VARIABLE shown OUTPUT_STRIP_TRAILING_WHITESPACE)
        set(shown "${shown}  (${sym})")
      endif()
      string(APPEND report "  ${what}: ${shown}\n")
    endforeach()
  endforeach()
  message(FATAL_ERROR
    "${LIB} does not export what ${EXPECTED} lists:\n${report}"
    "If the change is deliberate, keep the ABI promise (a removed or changed symbol needs a new "
    "SONAME or a new symbol version) and update the list: cmake -DUPDATE=ON -DKIND=${KIND} "
    "-DLIB=${LIB} -DEXPECTED=${EXPECTED} -DNM=${NM} -P ${CMAKE_CURRENT_LIST_FILE}")
endif()
list(LENGTH actual n)
message(STATUS "${n} exported symbols, as ${EXPECTED} lists")
