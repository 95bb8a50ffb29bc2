// The version macros of <uvcometd/version.hpp> (generated from meson's project version) and the
// library's uvcometd::version() agree, and the number orders releases.
#include <catch2/catch.hpp>

#include <cstring>
#include <string>

#include "uvcometd/version.hpp"

TEST_CASE("uvcometd::version() is the version the headers were generated with", "[version]") {
  CHECK(std::string(uvcometd::version()) == UVCOMETD_VERSION_STRING);
  CHECK(std::string(UVCOMETD_VERSION_STRING) == UVCOMETD_PROJECT_VERSION);
}

TEST_CASE("UVCOMETD_VERSION_STRING is MAJOR.MINOR.PATCH of the version macros", "[version]") {
  const std::string parts = std::to_string(UVCOMETD_VERSION_MAJOR) + "." +
                            std::to_string(UVCOMETD_VERSION_MINOR) + "." +
                            std::to_string(UVCOMETD_VERSION_PATCH);
  CHECK(parts == UVCOMETD_VERSION_STRING);
  CHECK(UVCOMETD_VERSION_NUMBER ==
        UVCOMETD_VERSION_MAJOR * 10000 + UVCOMETD_VERSION_MINOR * 100 + UVCOMETD_VERSION_PATCH);
}
