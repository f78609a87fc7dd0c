#include "api/listener.hpp"

namespace tlm {

Poco::Net::ServerSocket
listen_exclusively(const Poco::Net::SocketAddress& address) {
  // Poco's ServerSocket(address) also sets SO_REUSEPORT, which lets a
  // second process bind the same port; SO_REUSEADDR alone only allows a
  // quick restart over connections in TIME_WAIT.
  Poco::Net::ServerSocket socket;
  socket.bind(address, true, false);
  // A burst of thousands of connects waits in the kernel, not in client
  // retries (the kernel caps this at net.core.somaxconn).
  socket.listen(4096);
  return socket;
}

} // namespace tlm
