#pragma once

// Writing a secret to a file so that readers never see half of it.

#include <string>

#include "tlm/result.hpp"

namespace tlm::inline client_api {

/// Replaces `path` with `data`: a temporary file next to it, mode 0600
/// whatever the umask, fsynced, renamed over `path`, and the folder
/// fsynced so the rename lasts a crash. Failures are `cache_error`
/// naming the file.
result<done> write_file_atomically(const std::string& path,
                                   const std::string& data);

} // namespace tlm::inline client_api
