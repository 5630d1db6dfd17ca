# Writes every node/lua/*.lua as a C string constant LUA_<NAME> into one header, at build
# time, so the scripts the bus loads into Redis have one source that backends can run too
# (deploy/redis_publish.py reads the same files).
#   cmake -DDIR=<node/lua> -DOUT=<header> -P embed.cmake
file(GLOB scripts ${DIR}/*.lua)
list(SORT scripts)
set(text "/* Generated from the files in node/lua by node/lua/embed.cmake; do not edit. */\n")
foreach(f ${scripts})
  get_filename_component(name ${f} NAME_WE)
  string(TOUPPER ${name} NAME)
  file(READ ${f} body)
  string(REPLACE "\\" "\\\\" body "${body}")
  string(REPLACE "\"" "\\\"" body "${body}")
  string(REPLACE "\n" "\\n\"\n    \"" body "${body}")
  string(APPEND text "static const char LUA_${NAME}[] =\n    \"${body}\";\n")
endforeach()
file(WRITE ${OUT} "${text}")
