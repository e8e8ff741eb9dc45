//! Kernel interfaces, one small module each, with typed fds and commented `unsafe`.
