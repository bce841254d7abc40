/* SPDX-License-Identifier: MIT */
#ifndef NPIPE_EXPORT_H
#define NPIPE_EXPORT_H
/*
 * NPIPE_API marks what the shared library (libnpipe.so.0, npipe.dll)
 * exports: the C interface (npipe/npipe.h) and the public blocking C++ API
 * (npipe/npipe.hpp without npipe/async.hpp). npipe is
 * compiled with hidden visibility; on Linux a version script also keeps
 * out the template instances of the standard library and of Asio (whose
 * headers ask for default visibility). C and C++ both read this header.
 *
 *   NPIPE_BUILDING_LIBRARY  set by npipe's build while it compiles npipe
 *   NPIPE_SHARED            set for programs linking the shared library (the
 *                           CMake target npipe::shared and pkg-config's
 *                           npipe.pc set it): on Windows they import npipe's
 *                           symbols from npipe.dll, and npipe/async.hpp
 *                           refuses them (the async API needs the static
 *                           library; that header says why). Programs linking
 *                           the static library leave it unset.
 */
#if defined(_WIN32) || defined(__CYGWIN__)
#if defined(NPIPE_BUILDING_LIBRARY)
#define NPIPE_API __declspec(dllexport)
#elif defined(NPIPE_SHARED)
#define NPIPE_API __declspec(dllimport)
#else
#define NPIPE_API
#endif
#elif defined(__GNUC__)
#define NPIPE_API __attribute__((visibility("default")))
#else
#define NPIPE_API
#endif

#endif /* NPIPE_EXPORT_H */
