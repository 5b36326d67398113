package dataplane

import "sync/atomic"

type atomicU64 = atomic.Uint64

type atomicPointer[T any] = atomic.Pointer[T]
