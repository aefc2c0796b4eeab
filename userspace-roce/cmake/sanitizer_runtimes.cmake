# Run after every link of the runtime in a RDMA_TUTORIAL_SANITIZE build (cmake -P):
# writes OUT, the list of sanitizer runtimes a program that was not built with the
# sanitizers must load before LIB (scripts/userspace-roce.sh puts them in LD_PRELOAD).
# They are LIB's own NEEDED entries (libasan.so.8, libubsan.so.1 with GCC), resolved to
# files by the compiler that linked it, so the list always matches the library it sits
# next to, whichever compiler version built it.
#   -DLIB=<libibverbs.so.1> -DREADELF=<readelf> -DCXX=<compiler> -DOUT=<file>
foreach(var LIB READELF CXX OUT)
  if(NOT ${var})
    message(FATAL_ERROR "sanitizer_runtimes.cmake: -D${var}= is required")
  endif()
endforeach()

execute_process(COMMAND ${READELF} -d ${LIB} OUTPUT_VARIABLE dyn RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${READELF} -d ${LIB} failed (${rc})")
endif()
string(REGEX MATCHALL "\\(NEEDED\\)[^[]*\\[[^]]+\\]" needed "${dyn}")
set(first "")
set(rest "")
foreach(entry IN LISTS needed)
  string(REGEX REPLACE ".*\\[([^]]+)\\]" "\\1" name "${entry}")
  if(NOT name MATCHES "^lib(asan|ubsan|clang_rt\\.)")
    continue()
  endif()
  execute_process(COMMAND ${CXX} -print-file-name=${name} OUTPUT_VARIABLE path
                  OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
  # A compiler that does not know the file prints its bare name back.
  if(NOT rc EQUAL 0 OR NOT IS_ABSOLUTE "${path}" OR NOT EXISTS "${path}")
    message(FATAL_ERROR "${LIB} needs ${name}, but ${CXX} -print-file-name=${name} "
                        "does not find it ('${path}')")
  endif()
  get_filename_component(path "${path}" ABSOLUTE)  # drop the ../../.. of GCC's answer
  # ASan must come first in a process's library list (it replaces malloc).
  if(name MATCHES "asan")
    list(APPEND first "${path}")
  else()
    list(APPEND rest "${path}")
  endif()
endforeach()
if(NOT first)
  message(FATAL_ERROR "${LIB} was built with -fsanitize=address but needs no ASan runtime "
                      "library (a static sanitizer runtime?): programs built without the "
                      "sanitizers could not load it")
endif()

string(JOIN "\n" lines ${first} ${rest})
file(WRITE ${OUT}.tmp
"# libibverbs.so.1 in this directory is built with ASan and UBSan (RDMA_TUTORIAL_SANITIZE).
# A program built without them must load these sanitizer runtimes first, in this order;
# scripts/userspace-roce.sh puts them in LD_PRELOAD.
${lines}
")
file(RENAME ${OUT}.tmp ${OUT})
