#include "uvcometd/version.hpp"

namespace uvcometd {

const char* version() noexcept { return UVCOMETD_VERSION_STRING; }

}  // namespace uvcometd
