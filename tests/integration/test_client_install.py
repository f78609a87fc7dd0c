"""`cmake --install` puts the client library, its headers, its CMake
package, tlm and its bash completion under a prefix, and a program outside
the project (client/examples/keep_alive.cpp) builds against the installed
package alone (no CAF) and keeps a lease on the real tlmd. About 5 s.
"""

import shutil
import subprocess
from pathlib import Path

from client_harness import clean_env, tlm_binary  # noqa: F401
from tlmd_harness import assert_failure

REPO = Path(__file__).resolve().parents[2]


def run(argv, tmp_path, **kw):
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                       env=clean_env(tmp_path), timeout=120, **kw)
    assert r.returncode == 0, f"{argv} failed:\n{r.stdout}\n{r.stderr}"
    return r


def test_installed_client_builds_a_program_that_keeps_a_lease(tlm_binary, tlmd,
                                                               tmp_path):
    build_dir = Path(tlm_binary).parent.parent
    prefix = tmp_path / "prefix"
    run(["cmake", "--install", build_dir, "--prefix", prefix], tmp_path)
    for f in ["bin/tlm", "lib/libtlm_client.a", "include/tlm/client.hpp",
              "include/tlm/lease_keeper.hpp", "lib/cmake/tlm_client/tlm_clientConfig.cmake",
              "share/bash-completion/completions/tlm"]:
        assert (prefix / f).is_file(), f"not installed: {f}"
    assert not list((prefix / "include").rglob("caf")), "CAF headers installed"
    assert "caf" not in (prefix / "include/tlm/client.hpp").read_text().lower()
    run([prefix / "bin/tlm", "--help"], tmp_path)

    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(REPO / "client/examples/keep_alive.cpp", app / "main.cpp")
    (app / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.25)\nproject(app CXX)\n"
        "set(CMAKE_CXX_STANDARD 20)\nfind_package(tlm_client REQUIRED)\n"
        "add_executable(app main.cpp)\n"
        "target_link_libraries(app PRIVATE tlm::tlm_client)\n")
    run(["cmake", "-S", app, "-B", app / "b", "-G", "Ninja",
         f"-DCMAKE_PREFIX_PATH={prefix}"], tmp_path)
    run(["cmake", "--build", app / "b"], tmp_path)
    out = run([app / "b/app", f"tcp://127.0.0.1:{tlmd.tcp_port}", "local", "1"],
              tmp_path).stdout.splitlines()
    assert out[0].startswith("obtained lease "), out
    assert out[-1] == "revoked", out
    lease_id = out[0].split()[2]
    api = tlmd.api("tcp")
    assert_failure(api.get(lease_id), "not_found")


def test_the_readme_example_compiles_against_the_headers(tmp_path):
    """The C++ example in README.md's "Using tlmd from C++" is real code."""
    readme = (REPO / "README.md").read_text()
    start = readme.index('#include "tlm/client.hpp"\n#include "tlm/lease_keeper.hpp"')
    block = readme[start:readme.index("```", start)]
    includes, body = block.split("\n\n", 1)
    src = tmp_path / "readme_example.cpp"
    src.write_text(f"{includes}\n#include <string>\n"
                   "void use(const std::string&) {}\n"
                   f"int main() {{\n{body}\n}}\n")
    run(["g++", "-std=c++20", "-fsyntax-only", "-I", REPO / "client/include", src],
        tmp_path)
