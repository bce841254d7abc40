// SPDX-License-Identifier: MIT
// Builds the test exes' precompiled header (pch.hpp); holds no code.
