// Thin FUSE glue (STYLE.md §5, after libfuse's passthrough_hp.cc): each callback calls one
// Filesystem method inside Call(), which catches everything (coffer::Error -> its errno, anything
// else -> EIO), and then makes exactly one reply. Nothing throws into libfuse.
#define FUSE_USE_VERSION 312
#include "fs/fuse_glue.h"

#include <fuse3/fuse_lowlevel.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "common/error.h"

namespace coffer::fs {

namespace {

struct Glue {
  Filesystem* fs;
  PlayDead* play_dead;
  const MountOptions* options;
};

Glue* G(fuse_req_t req) { return static_cast<Glue*>(fuse_req_userdata(req)); }

// Runs `fn` (returning an errno) with play-dead applied; never throws.
template <class Fn>
int Call(fuse_req_t req, Fn&& fn, bool honour_play_dead = true) noexcept {
  try {
    if (honour_play_dead) {
      PlayDead* pd = G(req)->play_dead;
      int mode = pd->mode.load(std::memory_order_relaxed);
      if (mode == PlayDead::kEio) return EIO;
      if (mode == PlayDead::kSlow)
        std::this_thread::sleep_for(std::chrono::milliseconds(pd->delay_ms.load()));
    }
    return fn();
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
    return e.err() > 0 ? e.err() : EIO;
  } catch (const std::exception& e) {
    spdlog::error("internal error: {}", e.what());
    return EIO;
  } catch (...) {
    spdlog::error("internal error: unknown exception");
    return EIO;
  }
}

Context Ctx(fuse_req_t req) {
  const fuse_ctx* c = fuse_req_ctx(req);
  Context ctx{c->uid, c->gid, {}};
  ctx.groups = [req] {
    std::vector<gid_t> groups(64);
    int n = fuse_req_getgroups(req, static_cast<int>(groups.size()), groups.data());
    if (n > static_cast<int>(groups.size())) {
      groups.resize(static_cast<std::size_t>(n));
      n = fuse_req_getgroups(req, n, groups.data());
    }
    groups.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    return groups;
  };
  return ctx;
}

void ReplyEntry(fuse_req_t req, int err, const struct stat& st) {
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  fuse_entry_param e{};
  e.ino = st.st_ino;
  e.generation = 0;
  e.attr = st;
  e.attr_timeout = G(req)->options->attr_timeout;
  e.entry_timeout = G(req)->options->entry_timeout;
  fuse_reply_entry(req, &e);
}

void Init(void* userdata, fuse_conn_info* conn) {
  auto* g = static_cast<Glue*>(userdata);
  // Locks are left to the kernel (local to this mount, which is the only way in).
  conn->want &= ~FUSE_CAP_POSIX_LOCKS;
  conn->want &= ~FUSE_CAP_FLOCK_LOCKS;
  // FUSE_CAP_HANDLE_KILLPRIV stays on: cofferfs clears setuid/setgid on write itself, with the
  // current rule (the kernel's own FUSE fallback knows only the older one).
  if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  // readdirplus: a listing carries every entry's attributes, so that a stat or an open of each
  // entry after it needs no lookup of its own. The kernel's adaptive mode uses it when lookups
  // follow listings.
  if (g->options->readdirplus && (conn->capable & FUSE_CAP_READDIRPLUS)) {
    conn->want |= FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO;
  } else {
    conn->want &= ~(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
  }
  // No writeback cache: it costs a SETATTR of the times per written file (measured slower on
  // small files) and would leave O_APPEND and the end of the file to the kernel.
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  conn->max_write = 1 << 20;
}


void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  struct stat st {};
  int err = Call(req, [&] { return G(req)->fs->Lookup(parent, name, &st); });
  if (err == ENOENT && G(req)->options->negative_timeout > 0) {
    fuse_entry_param e{};
    e.ino = 0;  // negative entry, cached by the kernel
    e.entry_timeout = G(req)->options->negative_timeout;
    fuse_reply_entry(req, &e);
    return;
  }
  ReplyEntry(req, err, st);
}

void Forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  Call(req, [&] { G(req)->fs->Forget(ino, nlookup); return 0; }, false);
  fuse_reply_none(req);
}

void ForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  Call(req, [&] {
    for (size_t i = 0; i < count; ++i) G(req)->fs->Forget(forgets[i].ino, forgets[i].nlookup);
    return 0;
  }, false);
  fuse_reply_none(req);
}

void GetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  struct stat st {};
  int err = Call(req, [&] { return G(req)->fs->GetAttr(ino, &st); });
  if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_attr(req, &st, G(req)->options->attr_timeout);
  }
}

void SetAttr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  struct stat st {};
  int err = Call(req, [&] {
    SetAttrRequest r;
    if (to_set & FUSE_SET_ATTR_MODE) r.mode = attr->st_mode;
    if (to_set & FUSE_SET_ATTR_UID) r.uid = attr->st_uid;
    if (to_set & FUSE_SET_ATTR_GID) r.gid = attr->st_gid;
    if (to_set & FUSE_SET_ATTR_SIZE) r.size = static_cast<std::uint64_t>(attr->st_size);
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
      r.atime = timespec{0, UTIME_NOW};
    } else if (to_set & FUSE_SET_ATTR_ATIME) {
      r.atime = attr->st_atim;
    }
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
      r.mtime = timespec{0, UTIME_NOW};
    } else if (to_set & FUSE_SET_ATTR_MTIME) {
      r.mtime = attr->st_mtim;
    }
    return G(req)->fs->SetAttr(ino, r, &st, Ctx(req));
  });
  if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_attr(req, &st, G(req)->options->attr_timeout);
  }
}

void ReadLink(fuse_req_t req, fuse_ino_t ino) {
  std::string target;
  int err = Call(req, [&] { return G(req)->fs->ReadLink(ino, &target); });
  if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_readlink(req, target.c_str());
  }
}

void MkNod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  struct stat st {};
  int err = Call(req, [&] { return G(req)->fs->MkNod(parent, name, mode, rdev, Ctx(req), &st); });
  ReplyEntry(req, err, st);
}

void MkDir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  struct stat st {};
  int err = Call(req, [&] { return G(req)->fs->MkDir(parent, name, mode, Ctx(req), &st); });
  ReplyEntry(req, err, st);
}

void Unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, Call(req, [&] { return G(req)->fs->Unlink(parent, name); }));
}

void RmDir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_reply_err(req, Call(req, [&] { return G(req)->fs->RmDir(parent, name); }));
}

void Symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  struct stat st {};
  int err = Call(req, [&] { return G(req)->fs->Symlink(link, parent, name, Ctx(req), &st); });
  ReplyEntry(req, err, st);
}

void Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
            const char* newname, unsigned int flags) {
  fuse_reply_err(req, Call(req, [&] {
    return G(req)->fs->Rename(parent, name, newparent, newname, flags, Ctx(req));
  }));
}

void Link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  struct stat st {};
  int err = Call(req, [&] { return G(req)->fs->Link(ino, newparent, newname, &st); });
  ReplyEntry(req, err, st);
}

void Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
            fuse_file_info* fi) {
  struct stat st {};
  std::uint64_t fh = 0;
  int err = Call(req, [&] {
    return G(req)->fs->Create(parent, name, mode, fi->flags, Ctx(req), &st, &fh);
  });
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = fh;
  fi->keep_cache = G(req)->options->keep_cache;
  fuse_entry_param e{};
  e.ino = st.st_ino;
  e.attr = st;
  e.attr_timeout = G(req)->options->attr_timeout;
  e.entry_timeout = G(req)->options->entry_timeout;
  if (fuse_reply_create(req, &e, fi) == -ENOENT) {
    // The request was interrupted: the kernel never saw the handle.
    G(req)->fs->Release(st.st_ino, fh);
  }
}

void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  std::uint64_t fh = 0;
  int err = Call(req, [&] { return G(req)->fs->Open(ino, fi->flags, &fh); });
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = fh;
  fi->keep_cache = G(req)->options->keep_cache;
  // close(2) of a read-only descriptor has nothing to flush or to make durable: the kernel
  // need not send FLUSH (one request fewer per message read).
  fi->noflush = (fi->flags & O_ACCMODE) == O_RDONLY;
  if (fuse_reply_open(req, fi) == -ENOENT) G(req)->fs->Release(ino, fh);
}

void Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  std::string data;
  int err = Call(req, [&] {
    return G(req)->fs->Read(ino, fi->fh, static_cast<std::uint64_t>(off), size, &data);
  });
  if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_buf(req, data.data(), data.size());
  }
}

void Write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
           fuse_file_info* fi) {
  std::size_t written = 0;
  int err = Call(req, [&] {
    return G(req)->fs->Write(ino, fi->fh, static_cast<std::uint64_t>(off),
                             std::string_view(buf, size), &written, Ctx(req));
  });
  if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_write(req, written);
  }
}

void Fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
               fuse_file_info* fi) {
  fuse_reply_err(req, Call(req, [&] {
    if (offset < 0 || length <= 0) return EINVAL;
    return G(req)->fs->Fallocate(ino, fi->fh, mode, static_cast<std::uint64_t>(offset),
                                 static_cast<std::uint64_t>(length));
  }));
}

void Flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  fuse_reply_err(req, Call(req, [&] { return G(req)->fs->Flush(ino, fi->fh); }));
}

void Release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  fuse_reply_err(req, Call(req, [&] { return G(req)->fs->Release(ino, fi->fh); }, false));
}

void Fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) {
  fuse_reply_err(req, Call(req, [&] { return G(req)->fs->Fsync(ino, datasync != 0); }));
}

void OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  std::uint64_t fh = 0;
  int err = Call(req, [&] { return G(req)->fs->OpenDir(ino, &fh); });
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = fh;
  fi->cache_readdir = 0;
  fuse_reply_open(req, fi);
}

void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  std::vector<char> buf(size);
  std::size_t used = 0;
  int err = Call(req, [&] {
    return G(req)->fs->ReadDir(ino, static_cast<std::uint64_t>(off), [&](const DirEntryOut& e) {
      struct stat st {};
      st.st_ino = e.ino;
      st.st_mode = e.type;
      std::size_t need = fuse_add_direntry(req, buf.data() + used, size - used, e.name.c_str(),
                                           &st, static_cast<off_t>(e.next_offset));
      if (need > size - used) return false;
      used += need;
      return true;
    });
  });
  if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_buf(req, buf.data(), used);
  }
}

void ReadDirPlus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  std::vector<char> buf(size);
  std::size_t used = 0;
  const MountOptions* options = G(req)->options;
  int err = Call(req, [&] {
    return G(req)->fs->ReadDirPlus(ino, static_cast<std::uint64_t>(off),
                                   [&](const DirEntryOut& d) {
      fuse_entry_param e{};
      if (d.attr.st_ino == 0) {  // "." and "..": no lookup, only the type
        e.attr.st_ino = d.ino;
        e.attr.st_mode = d.type;
      } else {
        e.ino = d.ino;
        e.attr = d.attr;
        e.attr_timeout = options->attr_timeout;
        e.entry_timeout = options->entry_timeout;
      }
      std::size_t need = fuse_add_direntry_plus(req, buf.data() + used, size - used,
                                                d.name.c_str(), &e,
                                                static_cast<off_t>(d.next_offset));
      if (need > size - used) return false;
      used += need;
      return true;
    });
  });
  if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_buf(req, buf.data(), used);
  }
}

void ReleaseDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  fuse_reply_err(req, Call(req, [&] { return G(req)->fs->ReleaseDir(ino, fi->fh); }, false));
}

void FsyncDir(fuse_req_t req, fuse_ino_t ino, int, fuse_file_info*) {
  fuse_reply_err(req, Call(req, [&] { return G(req)->fs->FsyncDir(ino); }));
}

void StatFs(fuse_req_t req, fuse_ino_t) {
  struct statvfs st {};
  int err = Call(req, [&] { return G(req)->fs->StatFs(&st); });
  if (err) {
    fuse_reply_err(req, err);
  } else {
    fuse_reply_statfs(req, &st);
  }
}

// Timing of every operation for the metrics hook: Timed<"name", Fn>::Call wraps a callback.
std::atomic<OpObserver> g_observer{nullptr};

template <std::size_t N>
struct OpName {
  constexpr OpName(const char (&s)[N]) { std::copy_n(s, N, name); }
  char name[N];
};

template <OpName Name, auto Fn>
struct Timed;
template <OpName Name, class... A, void (*Fn)(fuse_req_t, A...)>
struct Timed<Name, Fn> {
  static void Call(fuse_req_t req, A... args) {
    OpObserver observer = g_observer.load(std::memory_order_relaxed);
    if (!observer) return Fn(req, args...);
    const auto start = std::chrono::steady_clock::now();
    Fn(req, args...);  // has replied: req is gone
    observer(Name.name,
             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
};

// RAII owners of the libfuse handles (STYLE.md §4).
struct SessionOwner {
  fuse_session* se = nullptr;
  bool mounted = false;
  bool signals = false;
  ~SessionOwner() {
    if (!se) return;
    if (signals) fuse_remove_signal_handlers(se);
    if (mounted) fuse_session_unmount(se);
    fuse_session_destroy(se);
  }
};

}  // namespace

void SetOpObserver(OpObserver observer) { g_observer.store(observer); }

int ServeFuse(Filesystem* fs, PlayDead* play_dead, const MountOptions& options,
              const std::function<void()>& on_mounted) {
  static fuse_lowlevel_ops ops = [] {
    fuse_lowlevel_ops o{};
    o.init = Init;
    o.lookup = Timed<"lookup", Lookup>::Call;
    o.forget = Timed<"forget", Forget>::Call;
    o.forget_multi = Timed<"forget_multi", ForgetMulti>::Call;
    o.getattr = Timed<"getattr", GetAttr>::Call;
    o.setattr = Timed<"setattr", SetAttr>::Call;
    o.readlink = Timed<"readlink", ReadLink>::Call;
    o.mknod = Timed<"mknod", MkNod>::Call;
    o.mkdir = Timed<"mkdir", MkDir>::Call;
    o.unlink = Timed<"unlink", Unlink>::Call;
    o.rmdir = Timed<"rmdir", RmDir>::Call;
    o.symlink = Timed<"symlink", Symlink>::Call;
    o.rename = Timed<"rename", Rename>::Call;
    o.link = Timed<"link", Link>::Call;
    o.create = Timed<"create", Create>::Call;
    o.open = Timed<"open", Open>::Call;
    o.read = Timed<"read", Read>::Call;
    o.write = Timed<"write", Write>::Call;
    o.flush = Timed<"flush", Flush>::Call;
    o.fallocate = Timed<"fallocate", Fallocate>::Call;
    o.release = Timed<"release", Release>::Call;
    o.fsync = Timed<"fsync", Fsync>::Call;
    o.opendir = Timed<"opendir", OpenDir>::Call;
    o.readdir = Timed<"readdir", ReadDir>::Call;
    o.readdirplus = Timed<"readdirplus", ReadDirPlus>::Call;
    o.releasedir = Timed<"releasedir", ReleaseDir>::Call;
    o.fsyncdir = Timed<"fsyncdir", FsyncDir>::Call;
    o.statfs = Timed<"statfs", StatFs>::Call;
    return o;
  }();

  Glue glue{fs, play_dead, &options};
  // noatime: an access time would cost a replicated record write per message read.
  std::string mount_opts =
      "fsname=" + options.state_dir + ",subtype=cofferfs,default_permissions,noatime";
  if (options.allow_other) mount_opts += ",allow_other";
  if (options.read_only) mount_opts += ",ro";
  std::vector<std::string> arg_strings = {"cofferfs", "-o", mount_opts};
  if (options.debug) arg_strings.push_back("-d");
  std::vector<char*> argv;
  for (auto& s : arg_strings) argv.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());

  SessionOwner owner;
  owner.se = fuse_session_new(&args, &ops, sizeof ops, &glue);
  if (!owner.se) throw Error(EINVAL, "cannot create the FUSE session (bad options?)");
  if (fuse_set_signal_handlers(owner.se) != 0) throw Error(EIO, "cannot set signal handlers");
  owner.signals = true;
  if (fuse_session_mount(owner.se, options.mountpoint.c_str()) != 0)
    throw Error(EIO, "cannot mount on " + options.mountpoint);
  owner.mounted = true;
  // Changes from other boxes: the kernel forgets the names and attributes (and contents) it
  // cached, so that processes here see them at once rather than after entry/attr_timeout.
  // Cleared (waiting for a running call) before the session goes.
  struct InvalidatorGuard {
    Filesystem* fs;
    ~InvalidatorGuard() { fs->SetInvalidator(nullptr); }
  } inval_guard{fs};
  fs->SetInvalidator([se = owner.se](const std::vector<Invalidation>& changes) {
    for (const Invalidation& c : changes) {
      // -ENOENT: the kernel holds nothing of it. Other errors: it forgets at the timeouts.
      if (c.ino)
        fuse_lowlevel_notify_inval_inode(se, c.ino, c.data ? 0 : -1, 0);
      else
        fuse_lowlevel_notify_inval_entry(se, c.parent, c.name.data(), c.name.size());
    }
  });
  spdlog::info("mounted {} on {}", options.state_dir, options.mountpoint);
  on_mounted();

  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(cfg, 0);
  fuse_loop_cfg_set_max_threads(cfg, options.max_threads);
  fuse_loop_cfg_set_idle_threads(cfg, std::min<unsigned>(options.max_threads, 10));
  int rc = fuse_session_loop_mt(owner.se, cfg);
  fuse_loop_cfg_destroy(cfg);
  spdlog::info("unmounting {}", options.mountpoint);
  return rc < 0 ? -rc : 0;
}

}  // namespace coffer::fs
