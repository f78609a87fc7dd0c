#include "app/daemon.hpp"

int main(int argc, char** argv) {
  return tlm::run_daemon(argc, argv);
}
