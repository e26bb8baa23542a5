// cmake/sanitize_options.cpp — linked into each of our executables when STOCKMIXER_SANITIZE is set
// (cmake/sanitize.cmake): the sanitizers' default runtime options. ASAN_OPTIONS and UBSAN_OPTIONS in
// the environment still override them.
//
// halt_on_error + abort_on_error: the first report ends the program with SIGABRT, never with exit
// code 1, which the CLI tests expect for a refused input. print_stacktrace: UBSan names the call path.

extern "C" const char* __asan_default_options();
extern "C" const char* __ubsan_default_options();

extern "C" __attribute__((used, visibility("default"))) const char* __asan_default_options() {
  return "halt_on_error=1:abort_on_error=1:detect_leaks=1:strict_string_checks=1:check_initialization_order=1";
}

extern "C" __attribute__((used, visibility("default"))) const char* __ubsan_default_options() {
  return "halt_on_error=1:abort_on_error=1:print_stacktrace=1";
}
