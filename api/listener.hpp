#pragma once

#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>

namespace tlm {

/// A socket listening on `address` that no other process can share: a
/// second tlmd on the same port fails here (Poco's `NetException`, code
/// `EADDRINUSE`) instead of taking half the connections.
Poco::Net::ServerSocket
listen_exclusively(const Poco::Net::SocketAddress& address);

} // namespace tlm
