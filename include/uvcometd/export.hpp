/// @file
/// uvcometd — UVCOMETD_API, the mark of every name the shared library exports. The library is
/// built with hidden visibility, so a name without it stays internal. Plain preprocessor, also
/// included by the C header <uvcometd.h>.
#pragma once

/// Gives a declaration default visibility: it is part of the library's ABI (see "ABI policy" in
/// README.md). Empty on compilers without visibility attributes.
#if defined(__GNUC__) || defined(__clang__)
#define UVCOMETD_API __attribute__((visibility("default")))
#else
#define UVCOMETD_API
#endif
