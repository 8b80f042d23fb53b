/* placeholder, replaced below */
#include "server_int.h"
const char   tm__chat_page_html[] = "<!doctype html><title>TensorMesh</title>";
const size_t tm__chat_page_len = sizeof tm__chat_page_html - 1;
