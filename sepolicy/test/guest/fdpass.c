// Guest helper for the SELinux enforcement test: hands a file descriptor from one
// domain to another over an abstract Unix socket (SCM_RIGHTS), the way a client hands
// a model file to dmaloadd, and labels files (setxattr security.selinux).
//
//   fdpass label PATH CONTEXT      set PATH's SELinux label
//   fdpass serve NAME COUNT        accept COUNT connections; for each, receive one fd
//                                  and read from it; print "received <n> bytes" or
//                                  "no fd received (refused)"
//   fdpass send NAME PATH          open PATH read-only, send its fd to NAME
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

static socklen_t abstract_addr(const char *name, struct sockaddr_un *addr) {
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    size_t len = strlen(name);
    if (len > sizeof(addr->sun_path) - 2) len = sizeof(addr->sun_path) - 2;
    memcpy(addr->sun_path + 1, name, len);  // sun_path[0] = 0: abstract namespace
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len);
}

static int serve(const char *name, int count) {
    struct sockaddr_un addr;
    socklen_t len = abstract_addr(name, &addr);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || bind(s, (struct sockaddr *)&addr, len) < 0 || listen(s, 4) < 0) {
        perror("serve: socket");
        return 1;
    }
    printf("serving %s\n", name);
    fflush(stdout);
    for (int i = 0; i < count; i++) {
        int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) { perror("accept"); return 1; }
        char byte;
        char control[CMSG_SPACE(sizeof(int))];
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1,
                             .msg_control = control, .msg_controllen = sizeof(control)};
        ssize_t n = recvmsg(c, &msg, MSG_CMSG_CLOEXEC);
        struct cmsghdr *cm = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL;
        if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm), sizeof(fd));
            char buf[4096];
            ssize_t got = read(fd, buf, sizeof(buf));
            if (got < 0) printf("fd received, read failed: %s\n", strerror(errno));
            else printf("received %zd bytes\n", got);
            close(fd);
        } else {
            printf("no fd received (refused%s)\n", (msg.msg_flags & MSG_CTRUNC) ? ", MSG_CTRUNC" : "");
        }
        fflush(stdout);
        close(c);
    }
    return 0;
}

static int send_fd(const char *name, const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { fprintf(stderr, "send: open %s: %s\n", path, strerror(errno)); return 1; }
    struct sockaddr_un addr;
    socklen_t len = abstract_addr(name, &addr);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&addr, len) < 0) {
        fprintf(stderr, "send: connect %s: %s\n", name, strerror(errno));
        return 1;
    }
    char byte = 'f';
    char control[CMSG_SPACE(sizeof(int))];
    memset(control, 0, sizeof(control));
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = control, .msg_controllen = sizeof(control)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(fd));
    if (sendmsg(s, &msg, 0) < 0) { fprintf(stderr, "send: sendmsg: %s\n", strerror(errno)); return 1; }
    char ack;
    (void)read(s, &ack, 1);  // wait until the server closed the connection
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "label") == 0) {
        if (setxattr(argv[2], "security.selinux", argv[3], strlen(argv[3]) + 1, 0) < 0) {
            fprintf(stderr, "label %s: %s\n", argv[2], strerror(errno));
            return 1;
        }
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "serve") == 0) return serve(argv[2], atoi(argv[3]));
    if (argc == 4 && strcmp(argv[1], "send") == 0) return send_fd(argv[2], argv[3]);
    fprintf(stderr, "usage: fdpass label PATH CTX | serve NAME COUNT | send NAME PATH\n");
    return 2;
}
