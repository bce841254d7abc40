# SPDX-License-Identifier: MIT
# Runs examples/seed_server.cpp and examples/seed_client.cpp (or, with
# SERVER_ARGS/CLIENT_ARGS, `npipe serve --once` and `npipe send`) against
# each other in a private pipe directory and checks both outputs.
# EMULATOR runs them (Wine for the Windows build).
string(RANDOM LENGTH 12 ALPHABET abcdefghijklmnopqrstuvwxyz0123456789 suffix) # file names are the folded pipe name
set(dir /tmp/npipe-example-${suffix})
file(MAKE_DIRECTORY ${dir})
set(ENV{NPIPE_DIR} ${dir})
set(name "example-${suffix}")
string(REPLACE ";" " " SERVER_ARGS "${SERVER_ARGS}")
string(REPLACE ";" " " CLIENT_ARGS "${CLIENT_ARGS}")
if(EMULATOR)
  # Windows (under Wine): the name lives in the system's pipe namespace, so
  # the client retries until the server is there.
  execute_process(
    COMMAND sh -c "\"${EMULATOR}\" \"${SERVER}\" ${SERVER_ARGS} '${name}' > '${dir}/server.out' 2>&1 & pid=$!; \
      for i in $(seq 100); do \"${EMULATOR}\" \"${CLIENT}\" ${CLIENT_ARGS} '${name}' 'hello from the example' > '${dir}/client.out' 2>&1 \
        && break; sleep 0.1; done; rc=$?; wait $pid; s=$?; cat '${dir}/client.out'; exit $((rc + s))"
    RESULT_VARIABLE rc OUTPUT_VARIABLE client_out ERROR_VARIABLE client_err TIMEOUT 50)
else()
  # The client retries until the server's name exists, then both finish.
  execute_process(
    COMMAND sh -c "\"${SERVER}\" ${SERVER_ARGS} '${name}' > '${dir}/server.out' 2>&1 & pid=$!; \
      for i in $(seq 200); do [ -S '${dir}/${name}' ] && break; sleep 0.05; done; \
      \"${CLIENT}\" ${CLIENT_ARGS} '${name}' 'hello from the example'; rc=$?; wait $pid; exit $((rc + $?))"
    RESULT_VARIABLE rc OUTPUT_VARIABLE client_out ERROR_VARIABLE client_err TIMEOUT 50)
endif()
file(READ ${dir}/server.out server_out)
file(REMOVE_RECURSE ${dir})
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "examples failed (${rc}): ${client_out} ${client_err} ${server_out}")
endif()
if(NOT server_out MATCHES "Bytes received: 22")
  message(FATAL_ERROR "server printed: ${server_out}")
endif()
# The reply is the one the README shows, "npipe VERSION | YYYY-MM-DD HH:MM:SS"
# (the time as `npipe serve` formats it), and nothing else: no stray newline
# inside the brackets. Under Wine, lines end in CRLF and Wine may add lines of
# its own, so there the reply must be one whole line of the output.
string(REPLACE "\r" "" client_text "${client_out}")
string(REPLACE "." "\\." version_re "${VERSION}")
set(reply_re "Response received: \\[npipe ${version_re} \\| [0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]\\]\n")
if(EMULATOR)
  set(reply_re "(^|\n)${reply_re}")
else()
  set(reply_re "^${reply_re}$")
endif()
if(NOT VERSION OR NOT client_text MATCHES "${reply_re}")
  message(FATAL_ERROR "client printed [${client_out}], expected one line matching ${reply_re}")
endif()
message(STATUS "${server_out}${client_out}")
