# find_package(tlm_client) for programs using the installed client library.
include(CMakeFindDependencyMacro)
find_dependency(Threads)
find_dependency(nlohmann_json)
find_dependency(Poco COMPONENTS Foundation Net)
include(${CMAKE_CURRENT_LIST_DIR}/tlm_client_targets.cmake)
