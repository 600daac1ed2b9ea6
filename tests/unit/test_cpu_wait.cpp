// CpuWait: a thread that shares one CPU with busy threads waits for it; a
// sleeping one does not; a thread that is not there is not found.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "common/cpu_wait.hpp"
#include "test_util.hpp"

namespace bnf {
namespace {

using std::chrono::milliseconds;

// Threads named `name`-N spinning until destroyed, all on the CPU this test runs on.
class Spinners {
 public:
  Spinners(const std::string& name, int n) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this] {
        while (!stop_) {
        }
      });
      pthread_setname_np(threads_.back().native_handle(), (name + "-" + std::to_string(i)).c_str());
      pthread_setaffinity_np(threads_.back().native_handle(), sizeof one, &one);
    }
  }
  ~Spinners() {
    stop_ = true;
    for (auto& t : threads_) t.join();
  }
  Spinners(const Spinners&) = delete;
  Spinners& operator=(const Spinners&) = delete;

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

TEST(CpuWait, ABusyThreadSharingItsCpuWaitsForIt) {
  Spinners spin("bnf-spin", 3);
  auto w = CpuWait::of_thread(::getpid(), "bnf-spin-0");
  ASSERT_TRUE(w.has_value());
  std::this_thread::sleep_for(milliseconds(300));
  const auto share = w->share();
  ASSERT_TRUE(share.has_value());
  EXPECT_GT(*share, 0.3);  // 2 of 3 spinners wait at any time: ~0.67
  EXPECT_LE(*share, 1.05);
}

TEST(CpuWait, ASleepingThreadDoesNotWait) {
  std::atomic<bool> stop{false};
  std::thread sleeper([&] {
    while (!stop) std::this_thread::sleep_for(milliseconds(5));
  });
  pthread_setname_np(sleeper.native_handle(), "bnf-sleeper");
  auto w = CpuWait::of_thread(::getpid(), "bnf-sleeper");
  std::this_thread::sleep_for(milliseconds(200));
  stop = true;
  ASSERT_TRUE(w.has_value());
  const auto share = w->share();
  sleeper.join();
  ASSERT_TRUE(share.has_value());
  EXPECT_LT(*share, 0.1);
}

TEST(CpuWait, NoThreadOfThatName) { EXPECT_FALSE(CpuWait::of_thread(::getpid(), "no-such-thread").has_value()); }

TEST(CpuWait, SchedstatLineGivesTheWaitField) {
  test::TempDir dir;
  const std::string path = dir.path() + "/schedstat";
  std::ofstream(path) << "123 456 7\n";
  EXPECT_EQ(schedstat_wait_ns(path), 456U);
  EXPECT_FALSE(schedstat_wait_ns(dir.path() + "/none").has_value());
}

}  // namespace
}  // namespace bnf
