# Debian 12 ships CAF 0.17.6 without a CMake package or pkg-config file, so we
# find the headers and libraries ourselves and insist on the 0.17 series: the
# code uses its API, which differs from CAF 0.18+ in many places.
find_path(CAF_INCLUDE_DIR caf/all.hpp)
find_library(CAF_CORE_LIBRARY caf_core)

if(CAF_INCLUDE_DIR AND EXISTS "${CAF_INCLUDE_DIR}/caf/config.hpp")
  file(STRINGS "${CAF_INCLUDE_DIR}/caf/config.hpp" caf_version_line
       REGEX "^#define CAF_VERSION [0-9]+")
  string(REGEX REPLACE ".* ([0-9]+)$" "\\1" CAF_VERSION_NUMBER
         "${caf_version_line}")
  math(EXPR CAF_VERSION_MAJOR "${CAF_VERSION_NUMBER} / 10000")
  math(EXPR CAF_VERSION_MINOR "(${CAF_VERSION_NUMBER} / 100) % 100")
  math(EXPR CAF_VERSION_PATCH "${CAF_VERSION_NUMBER} % 100")
  set(CAF_VERSION "${CAF_VERSION_MAJOR}.${CAF_VERSION_MINOR}.${CAF_VERSION_PATCH}")
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(CAF
  REQUIRED_VARS CAF_INCLUDE_DIR CAF_CORE_LIBRARY
  VERSION_VAR CAF_VERSION)

if(CAF_FOUND AND NOT CAF_VERSION_MINOR EQUAL 17)
  message(FATAL_ERROR "tlmd needs CAF 0.17.x (Debian 12's libcaf-dev); found ${CAF_VERSION}")
endif()

if(CAF_FOUND AND NOT TARGET CAF::core)
  find_package(Threads REQUIRED)
  add_library(CAF::core UNKNOWN IMPORTED)
  set_target_properties(CAF::core PROPERTIES
    IMPORTED_LOCATION "${CAF_CORE_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${CAF_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES Threads::Threads)
endif()
