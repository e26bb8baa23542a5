# cmake/sanitize.cmake — STOCKMIXER_SANITIZE: our own targets (tests, examples, benchmarks) built with
# GCC's or Clang's sanitizers, e.g. -DSTOCKMIXER_SANITIZE=address,undefined (docs/testing.md). Included
# by the top-level CMakeLists.txt once stockmixer_strict exists; users' targets are never touched.
set(STOCKMIXER_SANITIZE OFF CACHE STRING
  "Sanitizers for stockmixer's own targets, as -fsanitize= takes them (e.g. address,undefined); OFF for none")

if(NOT STOCKMIXER_SANITIZE)
  return()
endif()
if(NOT STOCKMIXER_SANITIZE MATCHES "^[a-z-]+(,[a-z-]+)*$")
  message(FATAL_ERROR "STOCKMIXER_SANITIZE is '${STOCKMIXER_SANITIZE}': expected OFF or a comma-separated list "
                      "of sanitizers as -fsanitize= takes them, e.g. address,undefined")
endif()
message(STATUS "stockmixer: our targets are built with -fsanitize=${STOCKMIXER_SANITIZE}")

# Every report is an error that stops the program (-fno-sanitize-recover: UBSan too, which otherwise
# prints and continues), with a stack trace that names files and lines (-g1: line tables only).
target_compile_options(stockmixer_strict INTERFACE
  -fsanitize=${STOCKMIXER_SANITIZE} -fno-sanitize-recover=all -fno-omit-frame-pointer -g1)
target_link_options(stockmixer_strict INTERFACE -fsanitize=${STOCKMIXER_SANITIZE})
# The runtime options compiled into every executable (sanitize_options.cpp): each report aborts, so a
# test that expects a refusal's exit code 1 cannot mistake a report for it.
target_sources(stockmixer_strict INTERFACE ${CMAKE_CURRENT_LIST_DIR}/sanitize_options.cpp)

# GCC 12 with AddressSanitizer warns falsely (-Wmaybe-uninitialized) inside <bits/std_function.h> as
# <regex> moves its NFA states (Catch2 includes <regex>): ASan's instrumentation of the inlined move
# hides the member's initialisation from the warning's data flow. The same code without ASan, and
# with UBSan alone, is clean, so only GCC builds that name address drop that one warning.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND STOCKMIXER_SANITIZE MATCHES "(^|,)address(,|$)")
  target_compile_options(stockmixer_strict INTERFACE -Wno-maybe-uninitialized)
endif()
