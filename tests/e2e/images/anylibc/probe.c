/* The program of the test images without Python or a shell (tests/e2e/test_any_image.py).
 *
 *     probe          prints "uid=U gid=G groups=G1,G2..." then its environment, one per line
 *     probe sleep    waits for a signal (SIGTERM ends it: the default action)
 *
 * Built with musl-gcc: dynamically for the musl image (so the image's own musl loader must
 * start it), statically for the distroless stand-in.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "sleep") == 0) {
        pause();
        return 0;
    }
    gid_t groups[64];
    int count = getgroups(64, groups);
    printf("uid=%d gid=%d groups=", (int)getuid(), (int)getgid());
    for (int i = 0; i < count; i++)
        printf(i ? ",%d" : "%d", (int)groups[i]);
    printf("\n");
    for (char **entry = environ; *entry; entry++)
        printf("%s\n", *entry);
    return 0;
}
