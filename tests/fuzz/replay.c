/*
 * replay.c - run a fuzz target's LLVMFuzzerTestOneInput() over files, so that
 * "make check" replays the corpus with any compiler, libFuzzer or not.
 *
 * usage: replay file-or-directory ...
 * A directory means every regular file in it (not recursively). A finding
 * aborts inside the target, which fails the test.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int
replay_file(const char *path)
{
	FILE *f;
	uint8_t *buf = NULL;
	size_t len = 0, size = 0, n;

	if ((f = fopen(path, "rb")) == NULL) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	do {
		if (len == size) {
			size = size ? size * 2 : 4096;
			if ((buf = realloc(buf, size)) == NULL) {
				fprintf(stderr, "replay: out of memory\n");
				exit(1);
			}
		}
		n = fread(buf + len, 1, size - len, f);
		len += n;
	} while (n > 0);
	if (ferror(f)) {
		fprintf(stderr, "replay: %s: read error\n", path);
		fclose(f);
		free(buf);
		return -1;
	}
	fclose(f);
	/* libFuzzer never passes NULL; keep the same contract. */
	LLVMFuzzerTestOneInput(buf != NULL ? buf : (const uint8_t *)"", len);
	free(buf);
	return 0;
}

int
main(int argc, char **argv)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	char path[4096];
	int i, files = 0, errors = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s file-or-directory ...\n", argv[0]);
		return 2;
	}
	for (i = 1; i < argc; i++) {
		if (stat(argv[i], &st) == -1) {
			fprintf(stderr, "replay: %s: %s\n", argv[i],
			    strerror(errno));
			errors++;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			errors += replay_file(argv[i]) != 0;
			files++;
			continue;
		}
		if ((d = opendir(argv[i])) == NULL) {
			fprintf(stderr, "replay: %s: %s\n", argv[i],
			    strerror(errno));
			errors++;
			continue;
		}
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof path, "%s/%s", argv[i],
			    de->d_name);
			if (stat(path, &st) == -1 || !S_ISREG(st.st_mode))
				continue;
			errors += replay_file(path) != 0;
			files++;
		}
		closedir(d);
	}
	printf("%s: %d inputs replayed, %d unreadable\n", argv[0], files,
	    errors);
	return errors > 0 || files == 0;
}
