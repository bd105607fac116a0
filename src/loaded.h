/* loaded.h - ppe's code, kept loaded as long as the process runs. */
#ifndef PPE_LOADED_H
#define PPE_LOADED_H

/* Keeps the code of ppe loaded until the process ends: lua_close may
** unload C libraries before the last finalizers (ppe's) run, and the I/O
** threads and fork handlers of ppe must outlive any state. 1 if it will
** stay (also when linked into the program). */
int ppe_stay_loaded(void);

#endif
