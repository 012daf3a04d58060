/* attrib.h - compiler annotations shared by every module. */
#ifndef SMTPTAP_ATTRIB_H
#define SMTPTAP_ATTRIB_H

#define PRINTFLIKE(f, a)	__attribute__((__format__(printf, f, a)))
#define NORETURN		__attribute__((__noreturn__))
#define WUNRES			__attribute__((__warn_unused_result__))
#define UNUSED			__attribute__((__unused__))

#endif
