"""Used by CI: wait for `make run`, sign in as a demo user and read the demo dataset list."""

import http.cookiejar
import re
import sys
import time
import urllib.parse
import urllib.request

base = sys.argv[1].rstrip("/")
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

deadline = time.monotonic() + 240
while True:
    try:
        login_page = opener.open(f"{base}/login/", timeout=5).read().decode()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("the catalog did not answer within 240 s")
        time.sleep(2)

token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page).group(1)
form = urllib.parse.urlencode({"username": "mia", "password": "catalog-demo", "csrfmiddlewaretoken": token}).encode()
request = urllib.request.Request(f"{base}/login/", data=form, headers={"Referer": f"{base}/login/"})
listing = opener.open(request, timeout=10).read().decode()
if "Accounts of the review site." not in listing:  # the demo's appdb.public.users
    sys.exit("signed in, but the dataset list does not show the demo datasets")
print("make run: signed in as mia and saw the demo datasets")
