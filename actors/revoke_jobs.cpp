#include "actors/revoke_jobs.hpp"

#include <algorithm>

namespace tlm {

bool revoke_jobs::matches(const packed_lease& x, const revoke_job& job) {
  return (job.backend.empty() || x.backend() == job.backend)
         && (job.tag.empty() || x.has_tag(job.tag));
}

uint32_t revoke_jobs::add(revoke_job job) {
  auto number = ++last_number_;
  newest_start_ms_ = std::max(newest_start_ms_, job.created_ms);
  number_of_.emplace(job.id, number);
  jobs_.emplace(number, entry{std::move(job), {}});
  return number;
}

uint32_t revoke_jobs::start(revoke_job job) {
  job.state = job_state::running;
  return add(std::move(job));
}

void revoke_jobs::drop(uint32_t number) {
  auto i = jobs_.find(number);
  if (i == jobs_.end())
    return;
  number_of_.erase(i->second.record.id);
  jobs_.erase(i);
}

uint32_t revoke_jobs::restore(revoke_job job, int64_t now_ms) {
  if (outdated(job, now_ms))
    return 0;
  return add(std::move(job));
}

uint32_t revoke_jobs::job_of_loaded(const packed_lease& x) const {
  for (auto& [number, e] : jobs_)
    if (e.record.state != job_state::done && x.issued_ms <= e.record.created_ms
        && matches(x, e.record))
      return number;
  return 0;
}

void revoke_jobs::lease_added(uint32_t number, bool irrevocable) {
  auto& p = jobs_.at(number).progress;
  ++p.remaining;
  if (irrevocable)
    ++p.irrevocable;
}

void revoke_jobs::lease_gave_up(uint32_t number) {
  ++jobs_.at(number).progress.irrevocable;
}

bool revoke_jobs::lease_gone(uint32_t number, bool was_irrevocable) {
  auto& p = jobs_.at(number).progress;
  if (was_irrevocable && p.irrevocable > 0)
    --p.irrevocable;
  return p.remaining > 0 && --p.remaining == 0;
}

const revoke_job& revoke_jobs::finish(uint32_t number, int64_t now_ms) {
  auto& job = jobs_.at(number).record;
  job.state = job_state::done;
  job.finished_ms = now_ms;
  return job;
}

std::vector<uint32_t> revoke_jobs::without_leases() const {
  std::vector<uint32_t> result;
  for (auto& [number, e] : jobs_)
    if (e.record.state != job_state::done && e.progress.remaining == 0)
      result.push_back(number);
  return result;
}

std::vector<std::string> revoke_jobs::forget_outdated(int64_t now_ms) {
  std::vector<std::string> ids;
  for (auto i = jobs_.begin(); i != jobs_.end();) {
    if (!outdated(i->second.record, now_ms)) {
      ++i;
      continue;
    }
    ids.push_back(i->second.record.id);
    number_of_.erase(i->second.record.id);
    i = jobs_.erase(i);
  }
  return ids;
}

std::optional<job_status> revoke_jobs::status(const std::string& id) const {
  auto i = number_of_.find(id);
  if (i == number_of_.end())
    return std::nullopt;
  return status(i->second);
}

job_status revoke_jobs::status(uint32_t number) const {
  auto& e = jobs_.at(number);
  return {e.record, e.progress};
}

} // namespace tlm
