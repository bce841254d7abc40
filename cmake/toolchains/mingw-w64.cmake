# SPDX-License-Identifier: MIT
# Cross-build for Windows (x86_64) with Debian's mingw-w64 and run the tests
# under Wine: ctest starts every test exe through CMAKE_CROSSCOMPILING_EMULATOR.
# Needs g++-mingw-w64-x86-64-posix (std::thread needs the posix thread model)
# and wine64 + wine. See scripts/test.sh for the Wine warm-up that avoids hangs.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(CMAKE_C_COMPILER x86_64-w64-mingw32-gcc-posix)
set(CMAKE_CXX_COMPILER x86_64-w64-mingw32-g++-posix)
set(CMAKE_RC_COMPILER x86_64-w64-mingw32-windres)
set(CMAKE_FIND_ROOT_PATH /usr/x86_64-w64-mingw32)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# Static: otherwise each exe needs libstdc++/libgcc/winpthread DLLs beside it.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static -static-libgcc -static-libstdc++")
# npipe.dll likewise: it needs no MinGW runtime DLLs beside it.
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-static -static-libgcc -static-libstdc++")
find_program(NPIPE_WINE NAMES wine wine64 PATHS /usr/lib/wine NO_CMAKE_FIND_ROOT_PATH)
if(NPIPE_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${NPIPE_WINE})
endif()
