/* vm.h - which Lua VM ppe's calls reach, told at run time. */
#ifndef PPE_VM_H
#define PPE_VM_H

/* 1 if the process runs LuaJIT, or if that could not be told; 0 for PUC
** Lua. Under LuaJIT no allocator of a state may be replaced or wrapped.
** Found once, by the first call: make it before any fork. */
int ppe_luajit(void);

#endif
