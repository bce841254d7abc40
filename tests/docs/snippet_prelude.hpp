// SPDX-License-Identifier: MIT
#pragma once
// What the documentation's fragments (<!-- snippet: fragment -->) may take
// as given without declaring it, because the text around them does: npipe's
// blocking API, a connected `pipe` and a `consume` for the bytes read. A
// fragment is compiled as the body of a function in namespace npipe_doc, so
// these names win over POSIX's ::pipe. Anything else a fragment uses, it
// declares or includes itself, as a reader would have to.
#include <npipe/npipe.hpp>

#include <cstddef>

namespace npipe_doc {
inline npipe::connection pipe;                     // "the pipe" of the surrounding text
inline void consume(const std::byte*, std::size_t) {} // the reader's own processing
} // namespace npipe_doc
