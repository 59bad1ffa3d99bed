/* filesystem.Filesystem's directory watching (WatchDir, CreateWatcher,
 * GetWatcherEvents, RemoveWatcher).  Not there yet. */
#include "e2b.h"

int e2b_fs_watch_dir(struct req *r)
{
  return api_fail(r, 501, "not_implemented", "corral does not watch directories yet");
}

int e2b_fs_create_watcher(struct req *r)
{
  return e2b_fs_watch_dir(r);
}

int e2b_fs_get_watcher_events(struct req *r)
{
  return e2b_fs_watch_dir(r);
}

int e2b_fs_remove_watcher(struct req *r)
{
  return e2b_fs_watch_dir(r);
}

void e2b_watchers_free(struct daemon *d)
{
  (void) d;
}
