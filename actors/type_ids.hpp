#pragma once

// The one type-ID block of the project: every atom and message type.
// Written in the 0.18 spelling that CAF 0.17.6 backports, so an upgrade of
// CAF touches this file and interfaces.hpp only.

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <caf/type_id.hpp>

#include "core/lease.hpp"
#include "core/shared_work.hpp"

CAF_BEGIN_TYPE_ID_BLOCK(tlm, caf::first_custom_type_id)

CAF_ADD_TYPE_ID(tlm, (tlm::lease))
CAF_ADD_TYPE_ID(tlm, (tlm::cloud_token))
CAF_ADD_TYPE_ID(tlm, (tlm::create_request))
CAF_ADD_TYPE_ID(tlm, (tlm::list_query))
CAF_ADD_TYPE_ID(tlm, (tlm::lease_page))
CAF_ADD_TYPE_ID(tlm, (tlm::health_report))
CAF_ADD_TYPE_ID(tlm, (std::vector<tlm::lease>))
CAF_ADD_TYPE_ID(tlm, (std::vector<tlm::cloud_token>))
CAF_ADD_TYPE_ID(tlm, (tlm::revoke_job))
CAF_ADD_TYPE_ID(tlm, (std::vector<tlm::revoke_job>))
CAF_ADD_TYPE_ID(tlm, (tlm::job_status))
CAF_ADD_TYPE_ID(tlm, (tlm::token_request))
CAF_ADD_TYPE_ID(tlm, (tlm::token_swap))
CAF_ADD_TYPE_ID(tlm, (tlm::exchange_request))
CAF_ADD_TYPE_ID(tlm, (tlm::revoke_request))
CAF_ADD_TYPE_ID(tlm, (tlm::lease_filter))
CAF_ADD_TYPE_ID(tlm, (tlm::live_update))
CAF_ADD_TYPE_ID(tlm, (tlm::orphan_query))
CAF_ADD_TYPE_ID(tlm, (tlm::orphan_work))
CAF_ADD_TYPE_ID(tlm, (std::vector<tlm::stored_count>))
CAF_ADD_TYPE_ID(tlm, (std::vector<std::string>))

// Verbs of the lease manager, cloud and storage interfaces.
CAF_ADD_ATOM(tlm, tlm::atom, create, "create")
CAF_ADD_ATOM(tlm, tlm::atom, get, "get")
CAF_ADD_ATOM(tlm, tlm::atom, revoke, "revoke")
CAF_ADD_ATOM(tlm, tlm::atom, renew, "renew")
CAF_ADD_ATOM(tlm, tlm::atom, list, "list")
CAF_ADD_ATOM(tlm, tlm::atom, exchange, "exchange")
CAF_ADD_ATOM(tlm, tlm::atom, health, "health")
CAF_ADD_ATOM(tlm, tlm::atom, ready, "ready")
CAF_ADD_ATOM(tlm, tlm::atom, tick, "tick")
CAF_ADD_ATOM(tlm, tlm::atom, lookup, "lookup")
CAF_ADD_ATOM(tlm, tlm::atom, adopt, "adopt")
CAF_ADD_ATOM(tlm, tlm::atom, get_all, "get_all")
CAF_ADD_ATOM(tlm, tlm::atom, describe, "describe")
CAF_ADD_ATOM(tlm, tlm::atom, save, "save")
CAF_ADD_ATOM(tlm, tlm::atom, remove, "remove")
CAF_ADD_ATOM(tlm, tlm::atom, load, "load")
CAF_ADD_ATOM(tlm, tlm::atom, commit, "commit")
CAF_ADD_ATOM(tlm, tlm::atom, flush, "flush")
CAF_ADD_ATOM(tlm, tlm::atom, ok, "ok")
CAF_ADD_ATOM(tlm, tlm::atom, reconcile, "reconcile")
CAF_ADD_ATOM(tlm, tlm::atom, job, "job")
// Self-message of the manager: hand the next picked leases of started
// revoke jobs to their lanes (never the public `job` query).
CAF_ADD_ATOM(tlm, tlm::atom, feed_lanes, "feed_lanes")
// Storage tells its watcher (the manager) when it starts or stops failing.
CAF_ADD_ATOM(tlm, tlm::atom, watch, "watch")
CAF_ADD_ATOM(tlm, tlm::atom, storage, "storage")
// Shared storage (several instances): claims of work, and the manager's
// self-message that asks for orphaned work.
CAF_ADD_ATOM(tlm, tlm::atom, claim, "claim")
CAF_ADD_ATOM(tlm, tlm::atom, orphans, "orphans")
// A batch of client calls from a front end (actors/manager_batch.hpp).
CAF_ADD_ATOM(tlm, tlm::atom, batch, "batch")

CAF_END_TYPE_ID_BLOCK(tlm)
