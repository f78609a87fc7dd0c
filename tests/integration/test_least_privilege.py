"""Least privilege at the backends (issue 8), through the real tlmd against a
real redis-server, a real influxd 1.x and the InfluxDB 2.x fake: a create's
options may narrow what its backend's role allows, never widen it, and the
dangerous rights (Redis @admin/@dangerous and ACL, InfluxDB 1.x ALL
PRIVILEGES, InfluxDB 2.x write on authorizations or users) need a role that
allows them explicitly.  What a leased credential may do is always asked
of the server itself.  Servers are module-scoped; every test starts its own
tlmd.  About 10 s.
"""

import itertools

import pytest

from backends_harness import (RedisEnv, V1Env, V2Env, split_user_password,
                              write_tlmd_config)
from servers import RedisReplyError
from tlmd_harness import assert_success


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("least-privilege-secrets")


@pytest.fixture
def redis(redis_server_module, secrets_dir):
    return RedisEnv(redis_server_module, secrets_dir)


@pytest.fixture
def v1(influxd1_module, secrets_dir):
    return V1Env(influxd1_module, secrets_dir)


@pytest.fixture
def v2(influxdb2_fake_module, secrets_dir):
    env = V2Env(influxdb2_fake_module, secrets_dir)
    env.reset()
    return env


def start(tlmd_factory, tmp_path, env, **settings):
    cfg = write_tlmd_config(tmp_path, env.config(**settings))
    return tlmd_factory(config=cfg).api("tcp")


_refusals = itertools.count()


def refused_to_start(tlmd_factory, tmp_path, env, **settings):
    """tlmd's stderr when it refuses to start with these settings."""
    name = f"refused{next(_refusals)}"
    cfg = write_tlmd_config(tmp_path, env.config(**settings), name=f"{name}.json")
    rc, err = tlmd_factory(start=False, config=cfg, name=name).start_expect_failure()
    assert rc != 0
    return err


def refused(api, env, options, named):
    """A create with these options is invalid_request naming `named`, and
    leaves no credential at the server."""
    before = env.server_credentials()
    r = api.fail({"action": "create", "backend": env.name,
                  "options": {"ttl": 60000, **options}}, "invalid_request")
    assert named in r["message"], r["message"]
    assert env.server_credentials() == before, "a refused create left a credential"
    return r


def lease(api, env, **options):
    return api.create(backend=env.name, options={"ttl": 60000, **options})


def noperm(conn, *command):
    err = conn.call(*command, raise_errors=False)
    return isinstance(err, RedisReplyError) and err.code == "NOPERM"


# -- redis_acl ----------------------------------------------------------------

#: The shorthand of the issue's report: one role `default`.
APP_ONLY = {"default_key_pattern": "app:*", "default_categories": ["read", "write"]}


def test_redis_options_cannot_widen_the_configured_rule(redis, tlmd_factory, tmp_path):
    api = start(tlmd_factory, tmp_path, redis, **APP_ONLY)
    # the example: it made a user with +@all ~*
    refused(api, redis, {"key_pattern": "*", "categories": ["all"]}, "key_pattern")
    refused(api, redis, {"categories": ["all"]}, "categories")
    refused(api, redis, {"categories": ["admin"]}, "categories")
    refused(api, redis, {"key_pattern": "app*"}, "key_pattern")
    refused(api, redis, {"commands": ["acl"]}, "commands")
    # nothing but validated words reaches the ACL rule
    refused(api, redis, {"key_pattern": "app:* +@all"}, "key_pattern")
    refused(api, redis, {"key_pattern": "app:x allkeys"}, "key_pattern")
    refused(api, redis, {"categories": ["read +@all"]}, "categories")
    refused(api, redis, {"categories": ["read", "-@all"]}, "categories")
    refused(api, redis, {"role": "admin"}, "'admin'")


def test_redis_narrowed_user_has_only_the_narrowed_rights(redis, tlmd_factory, tmp_path):
    api = start(tlmd_factory, tmp_path, redis, **APP_ONLY)
    got = lease(api, redis, key_pattern="app:42:*", categories=["read"])
    user, password = split_user_password(got["value"])
    acl = redis.srv.command("ACL", "GETUSER", user)
    rules = dict(zip(acl[::2], acl[1::2]))
    assert rules["keys"] == "~app:42:*", rules
    assert "+@read" in rules["commands"] and "+@write" not in rules["commands"], rules
    redis.srv.command("SET", "app:42:k", "v")
    with redis.srv.connect(user, password) as c:
        assert c.call("GET", "app:42:k") == "v"
        assert noperm(c, "SET", "app:42:k", "w")        # no write
        assert noperm(c, "GET", "app:7:k")              # outside the pattern
        assert noperm(c, "ACL", "SETUSER", "evil", "on", ">pw", "+@all", "~*")
    assert_success(api.call({"action": "revoke", "token_id": got["id"]}))


def test_redis_default_rule_grants_nothing_dangerous(redis, tlmd_factory, tmp_path):
    """@write holds FLUSHALL, which ignores key patterns: a role without
    allow_dangerous loses it, with everything Redis counts as dangerous."""
    api = start(tlmd_factory, tmp_path, redis, **APP_ONLY)
    got = lease(api, redis)
    redis.srv.command("SET", "other:keep", "1")
    with redis.srv.connect(*split_user_password(got["value"])) as c:
        assert c.call("SET", "app:1", "v") == "OK"
        for command in (["FLUSHALL"], ["FLUSHDB"], ["CONFIG", "GET", "port"],
                        ["ACL", "SETUSER", "evil", "on", ">pw", "+@all"],
                        ["KEYS", "*"], ["SHUTDOWN"], ["SWAPDB", "0", "1"]):
            assert noperm(c, *command), command
    assert redis.srv.command("GET", "other:keep") == "1"
    assert "evil" not in redis.srv.acl_users()


ROLES = {"reader": {"key_patterns": ["app:*"], "categories": ["read"]},
         "writer": {"key_patterns": ["app:*", "jobs:*"], "categories": ["read", "write"]},
         "ops": {"key_patterns": ["*"], "categories": ["all"], "allow_dangerous": True}}


def test_redis_roles_are_chosen_by_name_and_narrowed(redis, tlmd_factory, tmp_path):
    api = start(tlmd_factory, tmp_path, redis, default_key_pattern=None,
                default_categories=None, roles=ROLES, default_role="reader")
    reader = lease(api, redis)
    writer = lease(api, redis, role="writer", key_pattern="jobs:*")
    ops = lease(api, redis, role="ops")
    with redis.srv.connect(*split_user_password(reader["value"])) as c:
        assert noperm(c, "SET", "app:1", "v")
    with redis.srv.connect(*split_user_password(writer["value"])) as c:
        assert c.call("SET", "jobs:1", "v") == "OK"
        assert noperm(c, "SET", "app:1", "v")
    with redis.srv.connect(*split_user_password(ops["value"])) as c:
        assert c.call("CONFIG", "GET", "port")          # the role allows it
    refused(api, redis, {"role": "writer", "categories": ["all"]}, "categories")
    refused(api, redis, {"role": "nope"}, "'nope'")
    refused(api, redis, {"role": 7}, "role")
    # the role may also stand at the top level of the create
    top = assert_success(api.call({"action": "create", "backend": redis.name, "ttl": 60000,
                                   "role": "writer", "options": {"key_pattern": "jobs:*"}}))
    with redis.srv.connect(*split_user_password(top["lease"]["value"])) as c:
        assert c.call("SET", "jobs:2", "v") == "OK"
        assert noperm(c, "SET", "app:2", "v")
    r = api.fail({"action": "create", "backend": redis.name, "role": "nope"},
                 "invalid_request")
    assert "'nope'" in r["message"], r


def test_redis_dangerous_role_needs_allow_dangerous(redis, tlmd_factory, tmp_path):
    roles = {"ops": {"key_patterns": ["*"], "categories": ["read", "admin"]}}
    err = refused_to_start(tlmd_factory, tmp_path, redis, default_key_pattern=None,
                           default_categories=None, roles=roles)
    assert "backends.redis.roles.ops.categories" in err and "allow_dangerous" in err, err
    roles = {"ops": {"key_patterns": ["*"], "categories": ["read"], "commands": ["acl"]}}
    err = refused_to_start(tlmd_factory, tmp_path, redis, default_key_pattern=None,
                           default_categories=None, roles=roles)
    assert "backends.redis.roles.ops.commands" in err, err
    err = refused_to_start(tlmd_factory, tmp_path, redis, roles=ROLES)
    assert "backends.redis.default_key_pattern cannot be combined" in err, err


# -- influxdb1 (real influxd) ---------------------------------------------------

V1_SHORTHAND_OFF = {"default_database": None, "default_privilege": None}


def test_v1_privilege_and_database_outside_the_role_are_refused(v1, tlmd_factory,
                                                                tmp_path):
    v1.srv.admin_query('CREATE DATABASE "tlm_other"')
    roles = {"reader": {"databases": [v1.srv.database], "privilege": "READ"},
             "writer": {"databases": [v1.srv.database]}}
    api = start(tlmd_factory, tmp_path, v1, roles=roles, default_role="reader",
                **V1_SHORTHAND_OFF)
    refused(api, v1, {"privilege": "WRITE"}, "privilege")
    refused(api, v1, {"privilege": "ALL"}, "privilege")
    refused(api, v1, {"database": "tlm_other"}, "database")
    refused(api, v1, {"role": "writer", "database": "tlm_other"}, "database")
    refused(api, v1, {"privilege": "ALL PRIVILEGES"}, "privilege")
    # within the role: the user has exactly the narrowed grant
    got = lease(api, v1, role="writer", privilege="READ")
    user, password = split_user_password(got["value"])
    assert v1.srv.grants(user) == {v1.srv.database: "READ"}
    assert v1.srv.users()[user] is False
    assert v1.srv.write(v1.srv.database, "m v=1", user, password) == 403
    reader = lease(api, v1)
    assert v1.srv.grants(split_user_password(reader["value"])[0]) == \
        {v1.srv.database: "READ"}


def test_v1_all_privileges_only_from_a_role_that_allows_it(v1, tlmd_factory, tmp_path):
    err = refused_to_start(tlmd_factory, tmp_path, v1, roles={"ops": {"admin": True}},
                           **V1_SHORTHAND_OFF)
    assert "backends.v1.roles.ops.admin" in err and "allow_dangerous" in err, err
    roles = {"ops": {"admin": True, "allow_dangerous": True},
             "app": {"databases": [v1.srv.database]}}
    api = start(tlmd_factory, tmp_path, v1, roles=roles, default_role="app",
                **V1_SHORTHAND_OFF)
    app = lease(api, v1)
    assert v1.srv.users()[app["backend_id"]] is False
    ops = lease(api, v1, role="ops")
    assert v1.srv.users()[ops["backend_id"]] is True
    assert_success(api.call({"action": "revoke", "token_id": ops["id"]}))
    assert ops["backend_id"] not in v1.srv.users()


# -- influxdb (InfluxDB 2.x fake) -------------------------------------------------

def perm(action, type_, **resource):
    return {"action": action, "resource": {"type": type_, **resource}}


def test_v2_permissions_outside_the_role_are_refused(v2, tlmd_factory, tmp_path):
    roles = {"reader": {"permissions": [perm("read", "buckets")]},
             "writer": {"permissions": [perm("read", "buckets"), perm("write", "buckets")]}}
    api = start(tlmd_factory, tmp_path, v2, roles=roles, default_role="reader")
    refused(api, v2, {"permissions": [perm("write", "buckets")]}, "permissions[0]")
    refused(api, v2, {"permissions": [perm("write", "authorizations")]}, "permissions[0]")
    refused(api, v2, {"role": "writer",
                      "permissions": [perm("read", "buckets"), perm("write", "users")]},
            "permissions[1]")
    got = lease(api, v2, role="writer", permissions=[perm("read", "buckets")])
    auth = v2.authorization(got)
    assert [(p["action"], p["resource"]["type"]) for p in auth["permissions"]] == \
        [("read", "buckets")], auth["permissions"]
    got = lease(api, v2)
    assert [p["action"] for p in v2.authorization(got)["permissions"]] == ["read"]


def test_v2_write_on_authorizations_only_from_a_role_that_allows_it(v2, tlmd_factory,
                                                                    tmp_path):
    # the shorthand (default: read and write on buckets) cannot be widened
    api = start(tlmd_factory, tmp_path, v2)
    refused(api, v2, {"permissions": [perm("write", "authorizations")]}, "permissions[0]")
    refused(api, v2, {"permissions": [perm("read", "authorizations")]}, "permissions[0]")
    tokens = {"permissions": [perm("write", "authorizations")]}
    err = refused_to_start(tlmd_factory, tmp_path, v2, roles={"minter": tokens})
    assert "backends.v2.roles.minter.permissions" in err and "allow_dangerous" in err, err
    err = refused_to_start(tlmd_factory, tmp_path, v2,
                           default_permissions=[perm("write", "users")])
    assert "backends.v2.default_permissions" in err, err
    api = start(tlmd_factory, tmp_path, v2,
                roles={"minter": {**tokens, "allow_dangerous": True}})
    got = lease(api, v2)
    assert [(p["action"], p["resource"]["type"])
            for p in v2.authorization(got)["permissions"]] == [("write", "authorizations")]


# -- local ------------------------------------------------------------------------

def test_local_refuses_a_role(tlmd_factory, tmp_path):
    api = tlmd_factory().api("tcp")
    r = api.fail({"action": "create", "options": {"ttl": 60000, "role": "reader"}},
                 "invalid_request")
    assert "no roles" in r["message"], r["message"]
